//! Connections the sink refused (admission control, `Sink::accepted` said no): each
//! gets `Sink::refusal` and a FIN at once, with plain non-blocking calls outside the
//! ring, and is closed after a short linger with its input read away, so that a request
//! arriving after the answer does not make the kernel reset the answer away.
//!
//! Invariants: at most `MAX_REFUSED` sockets linger (more are closed at once); none
//! lingers past `LINGER` plus one loop turn.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::time::{Duration, Instant};

const MAX_REFUSED: usize = 1024;
const LINGER: Duration = Duration::from_millis(500);

#[derive(Default)]
pub(super) struct Refused {
    held: VecDeque<(TcpStream, Instant)>,
}

/// Reads and drops what `stream` has now; `true` once the peer has closed.
fn drain(stream: &mut TcpStream) -> bool {
    let mut sink = [0u8; 4096];
    loop {
        match stream.read(&mut sink) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

impl Refused {
    /// Answers `stream` with `answer` and a FIN; keeps it a while to drain its input.
    pub fn refuse(&mut self, mut stream: TcpStream, answer: &[u8]) {
        if stream.set_nonblocking(true).is_err() {
            return;
        }
        if !answer.is_empty() {
            // A fresh socket's send buffer takes a few hundred bytes at once.
            let _ = stream.write(answer);
        }
        let _ = stream.shutdown(Shutdown::Write);
        if drain(&mut stream) || self.held.len() >= MAX_REFUSED {
            return;
        }
        self.held.push_back((stream, Instant::now() + LINGER));
    }

    /// Closes the sockets whose linger is over, draining them first.
    pub fn expire(&mut self) {
        let now = Instant::now();
        while self.held.front().is_some_and(|(_, until)| *until <= now) {
            if let Some((mut stream, _)) = self.held.pop_front() {
                drain(&mut stream);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn a_refused_client_reads_the_answer_then_the_end() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (server_side, _) = listener.accept().unwrap();
        let mut refused = Refused::default();
        refused.refuse(server_side, b"HTTP/1.1 503 Service Unavailable\r\n\r\n");
        client.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut got = Vec::new();
        client
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        client.read_to_end(&mut got).unwrap();
        assert!(got.starts_with(b"HTTP/1.1 503"));
        std::thread::sleep(LINGER);
        refused.expire();
        assert!(refused.held.is_empty());
    }
}
