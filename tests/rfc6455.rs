//! RFC 6455 over raw TCP against the real `throng serve --app echo`: every rule the server
//! enforces, with many cases per rule.

mod util;

use std::time::{Duration, Instant};

use util::{Got, Peer, Server, close_frame, frame, frame_raw, upgrade_request};

fn refused(port: u16, request: &str) -> (u16, Vec<String>) {
    let mut p = Peer::connect(port);
    p.send(request.as_bytes());
    p.read_http().expect("an HTTP answer")
}

#[test]
fn handshake_refusals_carry_the_status_the_rfc_names() {
    let s = Server::start(&[]);
    let ok = upgrade_request(s.port, "/chat");
    let cases: Vec<(String, u16)> = vec![
        (ok.replacen("GET", "POST", 1), 400),
        (ok.replacen("HTTP/1.1", "HTTP/1.0", 1), 400),
        (
            ok.replacen(&format!("Host: 127.0.0.1:{}\r\n", s.port), "", 1),
            400,
        ),
        (
            ok.replacen("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "", 1),
            400,
        ),
        (
            ok.replacen("dGhlIHNhbXBsZSBub25jZQ==", "AQIDBAUGBwg=", 1),
            400,
        ),
        (
            ok.replacen("dGhlIHNhbXBsZSBub25jZQ==", "not base64 at all!!!!!!=", 1),
            400,
        ),
        (ok.replacen("Upgrade: websocket", "Upgrade: h2c", 1), 400),
        (
            ok.replacen("Connection: Upgrade", "Connection: keep-alive", 1),
            400,
        ),
        (ok.replacen("Sec-WebSocket-Version: 13\r\n", "", 1), 400),
        (ok.replacen("Upgrade: websocket\r\n", "", 1), 426),
        (ok.replacen("Version: 13", "Version: 8", 1), 426),
        (
            format!(
                "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                "a".repeat(9000)
            ),
            431,
        ),
        (
            format!(
                "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
                (0..60).map(|i| format!("X-{i}: v\r\n")).collect::<String>()
            ),
            431,
        ),
        ("\x16\x03\x01garbage\r\n\r\n".to_string(), 400),
    ];
    for (req, want) in cases {
        let (status, headers) = refused(s.port, &req);
        assert_eq!(status, want, "request:\n{req}");
        if status == 426 && req.contains("Upgrade: websocket") {
            assert!(headers.contains(&"sec-websocket-version: 13".to_string()));
        }
    }
    // Still serving after all of that.
    Peer::open(s.port).echo(1, b"alive");
}

#[test]
fn valid_handshake_variants_are_accepted() {
    let s = Server::start(&[]);
    let ok = upgrade_request(s.port, "/any/path?x=1");
    for req in [
        ok.clone(),
        ok.replacen("Upgrade: websocket", "Upgrade: WebSocket", 1),
        ok.replacen("Connection: Upgrade", "Connection: keep-alive, Upgrade", 1),
        ok.replacen("Connection: Upgrade", "connection: upgrade", 1),
    ] {
        let mut p = Peer::connect(s.port);
        p.send(req.as_bytes());
        let (status, headers) = p.read_http().expect("answer");
        assert_eq!(status, 101, "{req}");
        assert!(
            headers.contains(&"sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=".to_string())
        );
        p.echo(1, b"hi");
    }
}

#[test]
fn handshake_split_anywhere_and_frames_pipelined_behind_it() {
    let s = Server::start(&[]);
    let req = upgrade_request(s.port, "/");
    for cut in [1, 5, 20, req.len() / 2, req.len() - 3, req.len() - 1] {
        let mut p = Peer::connect(s.port);
        p.send(&req.as_bytes()[..cut]);
        std::thread::sleep(Duration::from_millis(5));
        p.send(&req.as_bytes()[cut..]);
        assert_eq!(p.read_http().map(|r| r.0), Some(101), "cut {cut}");
        p.echo(2, b"after split");
    }
    let mut p = Peer::connect(s.port);
    let mut bytes = req.into_bytes();
    bytes.extend(frame(true, 1, b"pipelined"));
    bytes.extend(frame(true, 2, &[0, 1, 2]));
    p.send(&bytes);
    assert_eq!(p.read_http().map(|r| r.0), Some(101));
    assert_eq!(p.read_message(), Got::Message(1, b"pipelined".to_vec()));
    assert_eq!(p.read_message(), Got::Message(2, vec![0, 1, 2]));
}

#[test]
fn every_length_form_echoes() {
    let s = Server::start(&[]);
    let mut p = Peer::open(s.port);
    for len in [0usize, 1, 125, 126, 127, 65535, 65536, 65537, 5 << 20] {
        let binary: Vec<u8> = (0..len).map(|i| (i * 31 % 256) as u8).collect();
        p.echo(2, &binary);
        let text: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
        p.echo(1, &text);
    }
}

#[test]
fn fragments_down_to_one_byte_with_control_frames_between() {
    let s = Server::start(&[]);
    let mut p = Peer::open(s.port);
    let msg: Vec<u8> = "fragmented €𝄞 message".bytes().cycle().take(300).collect();
    let mut bytes = Vec::new();
    for (i, b) in msg.iter().enumerate() {
        let op = if i == 0 { 1 } else { 0 };
        bytes.extend(frame(i + 1 == msg.len(), op, &[*b]));
        if i % 50 == 7 {
            bytes.extend(frame(true, 9, format!("p{i}").as_bytes()));
            bytes.extend(frame(true, 10, b"unsolicited pong"));
        }
    }
    p.send(&bytes);
    let mut pongs = Vec::new();
    let mut data = Vec::new();
    loop {
        let f = p.read_frame().expect("frame");
        match f.opcode {
            10 => pongs.push(String::from_utf8(f.payload).expect("utf8")),
            1 | 0 => {
                data.extend_from_slice(&f.payload);
                if f.fin {
                    break;
                }
            }
            o => panic!("unexpected opcode {o}"),
        }
    }
    assert_eq!(data, msg);
    let want: Vec<String> = (0..300)
        .filter(|i| i % 50 == 7)
        .map(|i| format!("p{i}"))
        .collect();
    assert_eq!(pongs, want, "one pong per ping, same payload, in order");
}

#[test]
fn utf8_split_at_every_byte_of_multibyte_characters() {
    let s = Server::start(&[]);
    let mut p = Peer::open(s.port);
    for text in ["é", "€", "𝄞", "aκόσμεb", "\u{10FFFF}\u{7FF}\u{800}\u{FFFF}"] {
        let bytes = text.as_bytes();
        for cut in 0..=bytes.len() {
            let mut msg = frame(false, 1, &bytes[..cut]);
            msg.extend(frame(true, 0, &bytes[cut..]));
            p.send(&msg);
            assert_eq!(
                p.read_message(),
                Got::Message(1, bytes.to_vec()),
                "{text:?} cut {cut}"
            );
        }
    }
}

#[test]
fn frames_split_across_writes_at_every_byte() {
    let s = Server::start(&[]);
    let mut p = Peer::open(s.port);
    for payload in [&b"small"[..], &[b'z'; 130][..]] {
        let f = frame(true, 2, payload);
        for cut in 1..f.len() {
            p.send(&f[..cut]);
            std::thread::sleep(Duration::from_millis(1));
            p.send(&f[cut..]);
            assert_eq!(
                p.read_message(),
                Got::Message(2, payload.to_vec()),
                "cut {cut}"
            );
        }
    }
    // A close frame split mid-payload.
    let c = close_frame(1000, b"bye");
    p.send(&c[..4]);
    std::thread::sleep(Duration::from_millis(5));
    p.send(&c[4..]);
    p.expect_close(1000);
}

#[test]
fn valid_close_codes_are_echoed_and_tcp_closed_by_the_server() {
    let s = Server::start(&[]);
    for code in [
        1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000,
        4999,
    ] {
        let mut p = Peer::open(s.port);
        p.send(&close_frame(code, b"reason"));
        p.expect_close(code);
    }
    let mut p = Peer::open(s.port);
    p.send(&frame(true, 8, b""));
    let f = p.read_frame().expect("close reply");
    assert_eq!(
        (f.opcode, f.payload.len()),
        (8, 0),
        "empty close answered with empty close"
    );
    p.expect_eof();
}

#[test]
fn invalid_close_payloads_fail_the_connection() {
    let s = Server::start(&[]);
    for code in [
        0u16, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
    ] {
        let mut p = Peer::open(s.port);
        p.send(&close_frame(code, b""));
        p.expect_close(1002);
    }
    let mut p = Peer::open(s.port);
    p.send(&frame(true, 8, &[0x03]));
    p.expect_close(1002);
    let mut p = Peer::open(s.port);
    p.send(&close_frame(1000, &[0xCE, 0xBA, 0xFF]));
    p.expect_close(1007);
}

#[test]
fn each_framing_violation_closes_with_1002() {
    let s = Server::start(&[]);
    let key = Some([1, 2, 3, 4]);
    let mut top_bit = vec![0x82u8, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 1];
    top_bit.extend_from_slice(&[9, 9, 9, 9, b'x']);
    let mut cases: Vec<(String, Vec<u8>)> = vec![
        ("unmasked text".into(), frame_raw(0x81, b"hello", None)),
        (
            "unmasked close".into(),
            frame_raw(0x88, &1000u16.to_be_bytes(), None),
        ),
        ("64-bit length with top bit".into(), top_bit),
        ("ping over 125".into(), frame(true, 9, &[0; 126])),
        ("close over 125".into(), frame(true, 8, &[3; 126])),
        ("fragmented ping".into(), frame(false, 9, b"x")),
        (
            "fragmented close".into(),
            frame(false, 8, &1000u16.to_be_bytes()),
        ),
        ("continuation without start".into(), frame(true, 0, b"x")),
        (
            "unfinished continuation without start".into(),
            frame(false, 0, b"x"),
        ),
        (
            "close with RSV".into(),
            frame_raw(0x80 | 0x70 | 8, &1000u16.to_be_bytes(), key),
        ),
    ];
    for rsv in [0x40u8, 0x20, 0x10, 0x70] {
        cases.push((
            format!("rsv {rsv:#x}"),
            frame_raw(0x80 | rsv | 1, b"x", key),
        ));
    }
    for op in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        cases.push((format!("opcode {op:#x}"), frame_raw(0x80 | op, b"", key)));
    }
    let mut interleaved = frame(false, 1, b"start");
    interleaved.extend(frame(true, 2, b"new message"));
    cases.push(("data frame inside a fragmented message".into(), interleaved));
    for (name, bytes) in cases {
        let mut p = Peer::open(s.port);
        p.echo(1, b"before");
        p.send(&bytes);
        match p.read_message() {
            Got::Close(Some(1002)) => p.expect_eof(),
            other => panic!("{name}: expected close 1002, got {other:?}"),
        }
    }
}

#[test]
fn invalid_utf8_fails_fast_with_1007() {
    let s = Server::start(&[]);
    let bad: [&[u8]; 6] = [
        &[0xFF],
        &[0xC0, 0xAF],
        &[0xED, 0xA0, 0x80],
        &[0xF4, 0x90, 0x80, 0x80],
        &[0xCE, 0xBA, 0xE1, 0xBD],
        &[b'a', 0x80],
    ];
    for payload in bad {
        let mut p = Peer::open(s.port);
        p.send(&frame(true, 1, payload));
        p.expect_close(1007);
    }
    // Invalid bytes in the first fragment: the close comes before the message could end.
    let mut p = Peer::open(s.port);
    p.send(&frame(false, 1, &[b'o', b'k', 0xF8, 0x88]));
    p.expect_close(1007);
    // Inside a frame whose payload has not fully arrived.
    let mut p = Peer::open(s.port);
    let mut f = frame(true, 1, &[0xC3; 1000]);
    f.truncate(20);
    f[8..12].copy_from_slice(&[0xFF ^ 0x3c, 0xFF ^ 0xa7, 0xFF ^ 0x01, 0xFF ^ 0x5e]);
    p.send(&f);
    p.expect_close(1007);
}

#[test]
fn oversized_messages_close_with_1009_from_the_header() {
    let s = Server::start(&["--max-message-size", "1000"]);
    let mut p = Peer::open(s.port);
    p.echo(2, &[7; 1000]);
    // Only a header declaring 2^40 bytes is sent.
    let mut head = vec![0x82u8, 0xFF];
    head.extend_from_slice(&(1u64 << 40).to_be_bytes());
    head.extend_from_slice(&[1, 2, 3, 4]);
    p.send(&head);
    p.expect_close(1009);
    // Fragments that add up past the limit.
    let mut p = Peer::open(s.port);
    p.send(&frame(false, 2, &[1; 600]));
    p.send(&frame(true, 0, &[1; 600]));
    p.expect_close(1009);
}

#[test]
fn sigterm_closes_everyone_with_1001_and_exits_zero() {
    let mut s = Server::start(&[]);
    let mut peers: Vec<Peer> = (0..10).map(|_| Peer::open(s.port)).collect();
    for p in &mut peers {
        p.echo(1, b"x");
    }
    // SAFETY: signalling our own child.
    unsafe { libc::kill(s.pid() as i32, libc::SIGTERM) };
    for p in &mut peers {
        let f = p.read_frame().expect("close frame");
        assert_eq!((f.opcode, util::close_code(&f.payload)), (8, Some(1001)));
        p.send(&close_frame(1001, b""));
    }
    let status = s
        .wait_exit(Duration::from_secs(10))
        .expect("exits after the drain");
    assert!(status.success(), "{status:?}");
}

#[test]
fn idle_connections_are_pinged_then_closed_unless_they_answer() {
    let s = Server::start(&["--idle-timeout", "1"]);
    let mut live = Peer::open(s.port);
    let mut silent = Peer::open(s.port);
    let start = Instant::now();
    // The live client answers every ping for 3.5 s.
    let mut pings = 0;
    while start.elapsed() < Duration::from_millis(3500) {
        let f = live.read_frame().expect("a ping within the idle timeout");
        assert_eq!(f.opcode, 9);
        pings += 1;
        live.send(&frame(true, 10, &f.payload));
    }
    assert!(pings >= 1);
    live.echo(1, b"still open");
    // The silent one got a ping, then a close 1001.
    let f = silent.read_frame().expect("ping");
    assert_eq!(f.opcode, 9);
    assert_eq!(silent.read_message(), Got::Close(Some(1001)));
}
