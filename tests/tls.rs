//! TLS end to end over 127.0.0.1 with certificates made here (rcgen): WebSocket echo
//! over TLS 1.3 and TLS 1.2 with a rustls client, the certificate reloaded on SIGHUP
//! while a client stays connected, bad files refused at start-up, and the official
//! socket.io-client over `wss://`/`https://` (WebSocket, polling, upgrade; two workers,
//! so polling requests are handed between them with their TLS session).

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, ProtocolVersion, RootCertStore, StreamOwned};

use util::{Server, bench};

/// A self-signed certificate for localhost and 127.0.0.1: (cert PEM, key PEM, DER).
fn make_cert() -> (String, String, CertificateDer<'static>) {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("rcgen");
    (
        made.cert.pem(),
        made.signing_key.serialize_pem(),
        made.cert.der().clone(),
    )
}

/// Writes `text` under the target dir, unique to this process and `name`.
fn write(name: &str, text: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("tls-{}-{name}", std::process::id()));
    std::fs::write(&path, text).expect("write");
    path
}

type Tls = StreamOwned<ClientConnection, TcpStream>;

/// A TLS client trusting `roots`, at `version`, connected and past its handshake.
fn connect(port: u16, roots: &[CertificateDer<'static>], version: ProtocolVersion) -> Tls {
    let mut store = RootCertStore::empty();
    for root in roots {
        store.add(root.clone()).expect("root");
    }
    let versions: &[&rustls::SupportedProtocolVersion] = match version {
        ProtocolVersion::TLSv1_2 => &[&rustls::version::TLS12],
        _ => &[&rustls::version::TLS13],
    };
    let config =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(versions)
            .expect("versions")
            .with_root_certificates(store)
            .with_no_client_auth();
    let name = ServerName::try_from("localhost").expect("name");
    let conn = ClientConnection::new(Arc::new(config), name).expect("client");
    let sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sock.set_read_timeout(Some(util::IO_TIMEOUT))
        .expect("timeout");
    let mut tls = StreamOwned::new(conn, sock);
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).expect("TLS handshake");
    }
    tls
}

/// The WebSocket upgrade over `tls`; panics unless 101.
fn upgrade(tls: &mut Tls, port: u16) {
    tls.write_all(util::upgrade_request(port, "/").as_bytes())
        .expect("send");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert!(head.len() < 4096, "head too long");
        tls.read_exact(&mut byte).expect("101 head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101 "), "{head}");
}

/// Sends `payload` as a text message and expects it back (short messages only).
fn echo(tls: &mut Tls, payload: &[u8]) {
    assert!(payload.len() < 126);
    tls.write_all(&util::frame(true, 1, payload)).expect("send");
    let mut head = [0u8; 2];
    tls.read_exact(&mut head).expect("frame head");
    assert_eq!(head[0], 0x81, "a final text frame");
    assert_eq!(usize::from(head[1]), payload.len());
    let mut got = vec![0u8; payload.len()];
    tls.read_exact(&mut got).expect("payload");
    assert_eq!(got, payload);
}

fn start(cert: &std::path::Path, key: &std::path::Path, extra: &[&str]) -> Server {
    let mut args = vec![
        "--tls-cert",
        cert.to_str().expect("utf-8"),
        "--tls-key",
        key.to_str().expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    Server::start(&args)
}

#[test]
fn the_load_generator_speaks_wss() {
    let (cert, key, _) = make_cert();
    let (cert, key) = (write("g.pem", &cert), write("g.key", &key));
    let server = start(&cert, &key, &[]);
    let url = format!("wss://localhost:{}/", server.port);
    let out = bench(&[
        "echo",
        "--url",
        &url,
        "--conns",
        "8",
        "--size",
        "300",
        "--inflight",
        "4",
        "--secs",
        "1",
        "--warmup",
        "0",
        "--threads",
        "2",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("a JSON report");
    assert!(v["msgs_per_sec"].as_f64() > Some(100.0), "{v}");
    assert_eq!(v["errors"].as_u64(), Some(0), "{v}");
}

#[test]
fn websocket_echo_over_tls_13_and_12() {
    let (cert, key, der) = make_cert();
    let (cert, key) = (write("a.pem", &cert), write("a.key", &key));
    let server = start(&cert, &key, &[]);
    for version in [ProtocolVersion::TLSv1_3, ProtocolVersion::TLSv1_2] {
        let mut tls = connect(server.port, std::slice::from_ref(&der), version);
        assert_eq!(tls.conn.protocol_version(), Some(version));
        upgrade(&mut tls, server.port);
        for i in 0..20 {
            echo(&mut tls, format!("over {version:?} #{i}").as_bytes());
        }
    }
    // A large message crosses many TLS records both ways.
    let mut tls = connect(server.port, &[der], ProtocolVersion::TLSv1_3);
    upgrade(&mut tls, server.port);
    let big = vec![b'x'; 300_000];
    let mut frame = vec![0x82, 0x80 | 127];
    frame.extend_from_slice(&(big.len() as u64).to_be_bytes());
    frame.extend_from_slice(&[0, 0, 0, 0]); // a zero mask leaves the payload as is
    frame.extend_from_slice(&big);
    tls.write_all(&frame).expect("send big");
    let mut head = [0u8; 10];
    tls.read_exact(&mut head).expect("big head");
    assert_eq!((head[0], head[1]), (0x82, 127));
    assert_eq!(
        u64::from_be_bytes(head[2..10].try_into().expect("8")),
        300_000
    );
    let mut got = vec![0u8; big.len()];
    tls.read_exact(&mut got).expect("big payload");
    assert!(got == big, "the big message came back changed");
    let _ = std::fs::remove_file(cert);
    let _ = std::fs::remove_file(key);
}

#[test]
fn sighup_reloads_the_certificate_and_open_connections_stay() {
    let (cert_a, key_a, der_a) = make_cert();
    let (cert_b, key_b, der_b) = make_cert();
    let (cert, key) = (write("r.pem", &cert_a), write("r.key", &key_a));
    let server = start(&cert, &key, &[]);
    let both = [der_a.clone(), der_b.clone()];
    let mut old = connect(server.port, &both, ProtocolVersion::TLSv1_3);
    upgrade(&mut old, server.port);
    echo(&mut old, b"before the reload");
    let served = |tls: &Tls| tls.conn.peer_certificates().expect("certs")[0].clone();
    assert_eq!(served(&old), der_a);

    std::fs::write(&cert, &cert_b).expect("new cert");
    std::fs::write(&key, &key_b).expect("new key");
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) };
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let fresh = connect(server.port, &both, ProtocolVersion::TLSv1_3);
        if served(&fresh) == der_b {
            break;
        }
        assert!(Instant::now() < deadline, "still the old certificate");
        std::thread::sleep(Duration::from_millis(50));
    }
    echo(&mut old, b"the old connection stays");
    let mut new = connect(server.port, &[der_b], ProtocolVersion::TLSv1_2);
    upgrade(&mut new, server.port);
    echo(&mut new, b"the new certificate serves");

    // A broken file on SIGHUP keeps the certificate in use.
    std::fs::write(&key, "not a key").expect("break key");
    // SAFETY: as above.
    unsafe { libc::kill(server.pid() as i32, libc::SIGHUP) };
    std::thread::sleep(Duration::from_millis(300));
    let mut after = connect(server.port, &both, ProtocolVersion::TLSv1_3);
    upgrade(&mut after, server.port);
    echo(&mut after, b"still serving");
    let _ = std::fs::remove_file(cert);
    let _ = std::fs::remove_file(key);
}

#[test]
fn unreadable_or_mismatched_files_are_a_startup_error() {
    let (cert_a, _, _) = make_cert();
    let (_, key_b, _) = make_cert();
    let (cert, key) = (write("m.pem", &cert_a), write("m.key", &key_b));
    let run = |cert: &str, key: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_throng"))
            .args(["serve", "--host", "127.0.0.1", "--port"])
            .arg(util::free_port().to_string())
            .args(["--tls-cert", cert, "--tls-key", key])
            .output()
            .expect("run")
    };
    let out = run(cert.to_str().expect("utf-8"), "/nonexistent/key.pem");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("private key"));
    let out = run(cert.to_str().expect("utf-8"), key.to_str().expect("utf-8"));
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("do not go together"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_file(cert);
    let _ = std::fs::remove_file(key);
}

#[test]
fn the_official_socketio_client_over_wss_and_https() {
    let (cert, key, _) = make_cert();
    let (cert, key) = (write("s.pem", &cert), write("s.key", &key));
    let server = start(&cert, &key, &["--app", "conformance", "--workers", "2"]);
    let url = format!("https://127.0.0.1:{}", server.port);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sio");
    util::node_suite(
        &dir.join("tls.test.js"),
        &[
            ("THRONG_URL", url.as_str()),
            ("CA_FILE", cert.to_str().expect("utf-8")),
        ],
    );
    let _ = std::fs::remove_file(cert);
    let _ = std::fs::remove_file(key);
}

#[test]
fn a_client_that_stops_reading_is_paused_and_resumed_without_losing_a_byte() {
    let (cert, key, der) = make_cert();
    let (cert, key) = (write("p.pem", &cert), write("p.key", &key));
    let server = start(&cert, &key, &["--max-queued-bytes", "65536"]);
    let mut tls = connect(server.port, &[der], ProtocolVersion::TLSv1_3);
    upgrade(&mut tls, server.port);
    let StreamOwned { mut conn, sock } = tls;
    let mut sock = sock;
    sock.set_nonblocking(true).expect("nonblocking");
    // 2,000 messages of 16 KiB (32 MB): far past the kernel's buffers and the server's
    // queue cap, so the server has to stop reading this client while it does not read.
    const N: usize = 2000;
    const SIZE: usize = 16 << 10;
    let message = |i: usize| vec![b'a' + (i % 26) as u8; SIZE];
    let mut sent = 0;
    let mut stalled_since: Option<Instant> = None;
    // Phase 1: write only, until writing has made no progress for 500 ms.
    while sent < N {
        if conn.wants_write() {
            match conn.write_tls(&mut sock) {
                Ok(_) => stalled_since = None,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let since = *stalled_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_millis(500) {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("write: {e}"),
            }
        } else {
            let mut frame = vec![0x82, 0x80 | 126];
            frame.extend_from_slice(&(SIZE as u16).to_be_bytes());
            frame.extend_from_slice(&[0, 0, 0, 0]);
            frame.extend_from_slice(&message(sent));
            conn.writer().write_all(&frame).expect("buffer");
            sent += 1;
        }
    }
    assert!(sent < N, "the server never stopped reading");
    // Phase 2: read everything back (and write the rest), bounded in time.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut plain = Vec::new();
    let mut got = 0;
    while got < N {
        assert!(Instant::now() < deadline, "{got} of {N} echoes after 30 s");
        if sent < N && !conn.wants_write() {
            let mut frame = vec![0x82, 0x80 | 126];
            frame.extend_from_slice(&(SIZE as u16).to_be_bytes());
            frame.extend_from_slice(&[0, 0, 0, 0]);
            frame.extend_from_slice(&message(sent));
            conn.writer().write_all(&frame).expect("buffer");
            sent += 1;
        }
        if conn.wants_write() {
            match conn.write_tls(&mut sock) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("write: {e}"),
            }
        }
        match conn.read_tls(&mut sock) {
            Ok(0) => panic!("the server closed after {got} echoes"),
            Ok(_) => {
                conn.process_new_packets().expect("TLS");
                let mut chunk = [0u8; 65536];
                while let Ok(n) = conn.reader().read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    plain.extend_from_slice(&chunk[..n]);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => panic!("read: {e}"),
        }
        // Whole frames: 0x82, 126, 2-byte length, payload.
        while plain.len() >= 4 + SIZE {
            assert_eq!((plain[0], plain[1]), (0x82, 126), "frame {got}");
            assert!(plain[4..4 + SIZE] == message(got)[..], "echo {got} changed");
            plain.drain(..4 + SIZE);
            got += 1;
        }
    }
    let _ = std::fs::remove_file(cert);
    let _ = std::fs::remove_file(key);
}
