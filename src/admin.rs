//! The admin listener (`--admin-port`, loopback unless `--admin-host` says otherwise):
//! the operator's endpoints (`/metrics`, `/healthz`, `/readyz`, as on the serving port)
//! and `POST /admin/drain`, which starts the same drain as SIGTERM.
//!
//! It is a plain blocking listener on its own thread, apart from the workers, so it
//! keeps answering while they drain (the serving port is closed by then: `/readyz`
//! here says `503 not ready: draining` to whoever watches). One request per connection,
//! one connection at a time: each is bounded by `IO_TIMEOUT` and `MAX_HEAD` bytes, so a
//! client that stalls holds the listener for at most that long.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::fabric::Fabric;
use crate::http::Request;
use crate::http::response::write_response;
use crate::worker::ops;

/// How long one admin client may take to send its request and read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest request read (a head with no body is all any admin request needs).
const MAX_HEAD: usize = 8 << 10;
/// The path that starts a drain.
pub const DRAIN_PATH: &str = "/admin/drain";

/// Starts a drain (shared with the signal handler).
pub type DrainTrigger = Arc<dyn Fn(&'static str) + Send + Sync>;

/// Binds `addr` and serves it on a thread of its own until the process exits.
pub fn start(addr: SocketAddr, fabric: Arc<Fabric>, drain: DrainTrigger) -> io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    thread::Builder::new()
        .name("throng-admin".into())
        .spawn(move || {
            for stream in listener.incoming() {
                match stream {
                    Ok(stream) => serve(stream, &fabric, &drain),
                    Err(e) => {
                        tracing::debug!(error = %e, "admin accept failed");
                        // EMFILE and the like: do not spin.
                        thread::sleep(Duration::from_millis(50));
                    }
                }
            }
        })?;
    tracing::info!("admin endpoints on http://{addr}/ (metrics, healthz, readyz, {DRAIN_PATH})");
    Ok(())
}

/// One request on `stream`, answered, then the connection is closed.
fn serve(mut stream: TcpStream, fabric: &Fabric, drain: &DrainTrigger) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let mut buf = vec![0u8; MAX_HEAD];
    let mut len = 0;
    let mut resp = Vec::with_capacity(256);
    loop {
        let n = match stream.read(&mut buf[len..]) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        len += n;
        match Request::parse(&buf[..len], MAX_HEAD) {
            Ok(None) if len < MAX_HEAD => continue,
            Ok(None) => {
                write_response(&mut resp, 431, "text/plain", b"", b"head too large\n", true);
            }
            Ok(Some(req)) => answer(&req, fabric, drain, &mut resp),
            Err(reject) => reject.write_to(&mut resp),
        }
        break;
    }
    let _ = stream.write_all(&resp);
}

fn answer(req: &Request<'_>, fabric: &Fabric, drain: &DrainTrigger, resp: &mut Vec<u8>) {
    if req.path() == DRAIN_PATH {
        if req.method == "POST" {
            drain("POST /admin/drain");
            write_response(resp, 202, "text/plain", b"", b"draining\n", true);
        } else {
            write_response(
                resp,
                405,
                "text/plain",
                b"Allow: POST\r\n",
                b"use POST\n",
                true,
            );
        }
        return;
    }
    match ops::answer(fabric, req) {
        Some(ops) => *resp = ops,
        None => write_response(resp, 404, "text/plain", b"", b"not found\n", true),
    }
}
