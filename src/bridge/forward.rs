//! Sticky-free polling across processes: this process's tag, the requests it forwards
//! to other owners (`Outbound`), and the requests it serves for other processes.
//!
//! Serving: a forwarded request is replayed on a loopback connection to this process's
//! own listener, so that every rule a local client meets (sid check, one GET and one
//! POST at a time, long-poll timing, the worker that owns the session) applies
//! unchanged; the answer goes back to the sender's channel. Each one is a short-lived
//! thread, at most `MAX_SERVING` at a time (more: `fail` at once).
//!
//! Invariants: a forwarded request's connection here learns its fate once (`Answered`
//! or `Failed`; `Accepted` before, at most once); `Outbound` holds at most
//! `MAX_OUTBOUND` entries and forgets one after `OUTBOUND_TTL`.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Bridge;
use super::eio::{self, EioMessage};
use crate::engineio::sid::{ProcessTag, tag_from};
use crate::runtime::ConnId;
use crate::sio::{ForwardEvent, Forwarded, ForwardedRequest, Registry, RelayedAnswer};

/// Requests served for other processes at once.
const MAX_SERVING: usize = 256;
/// Requests this process forwards that wait for an answer at once.
const MAX_OUTBOUND: usize = 16_384;
/// An outbound entry with no answer this long is forgotten (its connection has long
/// been answered 400 here).
const OUTBOUND_TTL: Duration = Duration::from_secs(120);
/// How much longer than the server's longest long-poll a replay may take.
const REPLAY_SLACK: Duration = Duration::from_secs(10);
/// Largest answer relayed back (Socket.IO's default maxPayload is 1 MB).
const MAX_ANSWER: u64 = 16 << 20;
/// Header lines of a replayed answer that this side writes itself.
const OWN_HEADERS: [&str; 5] = [
    "content-length",
    "content-type",
    "connection",
    "keep-alive",
    "transfer-encoding",
];

/// Requests forwarded from here, by id → the worker and connection waiting.
#[derive(Default)]
pub(super) struct Outbound {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, (usize, ConnId, Instant)>>,
    /// Requests being served here for other processes.
    serving: AtomicUsize,
}

impl Outbound {
    /// Registers a request from `reply_to`; `None` when too many are waiting.
    pub fn register(&self, reply_to: (usize, ConnId)) -> Option<u64> {
        let mut waiting = self.waiting.lock().ok()?;
        if waiting.len() >= MAX_OUTBOUND {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        waiting.insert(id, (reply_to.0, reply_to.1, Instant::now()));
        Some(id)
    }

    /// Forgets entries whose answer never came.
    pub fn purge(&self) {
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.retain(|_, (_, _, since)| since.elapsed() < OUTBOUND_TTL);
        }
    }

    /// Forgets `id` (its connection no longer waits).
    pub fn cancel(&self, id: u64) {
        self.take(id, true);
    }

    /// The waiting connection of `id`; kept unless `done`.
    fn take(&self, id: u64, done: bool) -> Option<(usize, ConnId)> {
        let mut waiting = self.waiting.lock().ok()?;
        let (worker, conn, _) = if done {
            waiting.remove(&id)?
        } else {
            *waiting.get(&id)?
        };
        Some((worker, conn))
    }
}

/// A tag no other process on the bus holds (checked with `count`, which says how
/// many subscribers a channel has), or a random one if the bus cannot be asked.
pub(super) fn pick_tag(mut count: impl FnMut(&str) -> Option<usize>, key: &str) -> ProcessTag {
    let mut tag = random_tag();
    for _ in 0..8 {
        match count(&eio::channel(key, &tag)) {
            Some(0) => return tag,
            Some(_) => tag = random_tag(),
            None => {
                tracing::info!(
                    tag = %String::from_utf8_lossy(&tag),
                    "Redis unreachable at start: the process tag in sids is not checked for clashes"
                );
                return tag;
            }
        }
    }
    tag
}

fn random_tag() -> ProcessTag {
    tag_from(super::random6())
}

/// Publishes `message` on the channel of process `to`.
fn send(bridge: &Bridge, to: &ProcessTag, message: &EioMessage) -> bool {
    bridge.enqueue(eio::channel(&bridge.wire.key, to), eio::encode(message))
}

/// Forwards `request` to process `owner` for the connection `reply_to`; its id.
pub(super) fn forward(
    bridge: &Bridge,
    owner: &ProcessTag,
    request: ForwardedRequest,
    reply_to: (usize, ConnId),
) -> Option<u64> {
    if !bridge.links_up() {
        return None;
    }
    let id = bridge.outbound.register(reply_to)?;
    let from = bridge.tag;
    if !send(bridge, owner, &EioMessage::Request { id, from, request }) {
        bridge.outbound.cancel(id);
        return None;
    }
    bridge
        .counters
        .forwarded_out
        .fetch_add(1, Ordering::Relaxed);
    Some(id)
}

/// A message on this process's own channel.
pub(super) fn on_message(bridge: &Arc<Bridge>, registry: &Registry, bytes: &[u8]) {
    let Some(message) = eio::decode(bytes) else {
        return;
    };
    let (id, event) = match message {
        EioMessage::Request { id, from, request } => return serve(bridge, id, from, request),
        EioMessage::Accepted { id } => (id, ForwardEvent::Accepted),
        EioMessage::Answer { id, answer } => (id, ForwardEvent::Answered(answer)),
        EioMessage::Failed { id } => (id, ForwardEvent::Failed),
        tunneled => return super::tunnel::on_message(bridge, registry, tunneled),
    };
    if matches!(event, ForwardEvent::Failed) {
        bridge
            .counters
            .forward_failures
            .fetch_add(1, Ordering::Relaxed);
    }
    let done = !matches!(event, ForwardEvent::Accepted);
    if let Some((worker, conn)) = bridge.outbound.take(id, done) {
        let _ = registry
            .io()
            .post_app(worker, Box::new(Forwarded { conn, id, event }));
    }
}

/// Serves a request forwarded by process `from` on a thread of its own.
fn serve(bridge: &Arc<Bridge>, id: u64, from: ProcessTag, request: ForwardedRequest) {
    bridge.counters.forwarded_in.fetch_add(1, Ordering::Relaxed);
    let serving = &bridge.outbound.serving;
    if serving.fetch_add(1, Ordering::AcqRel) >= MAX_SERVING {
        serving.fetch_sub(1, Ordering::AcqRel);
        send(bridge, &from, &EioMessage::Failed { id });
        return;
    }
    let worker = Arc::clone(bridge);
    let spawned = std::thread::Builder::new()
        .name("throng-eio-fwd".into())
        .stack_size(128 << 10)
        .spawn(move || {
            send(&worker, &from, &EioMessage::Accepted { id });
            let wait = worker.long_poll + REPLAY_SLACK;
            let message = match replay(worker.local, wait, &request) {
                Ok(answer) => EioMessage::Answer { id, answer },
                Err(e) => {
                    tracing::debug!(error = %e, "a forwarded polling request failed here");
                    EioMessage::Failed { id }
                }
            };
            send(&worker, &from, &message);
            worker.outbound.serving.fetch_sub(1, Ordering::AcqRel);
        });
    if spawned.is_err() {
        serving.fetch_sub(1, Ordering::AcqRel);
        send(bridge, &from, &EioMessage::Failed { id });
    }
}

/// Whether `request` is a polling request this process would take from a client: GET
/// or POST (OPTIONS never needs its session) on the Socket.IO path, and nothing in its
/// fields that could end a header line (a message on the bus must not be able to write
/// its own request to the listener).
fn replayable(request: &ForwardedRequest) -> bool {
    let clean = |s: &str| !s.bytes().any(|b| b.is_ascii_control() || b == b' ');
    let header = |s: &Option<String>| {
        s.as_deref()
            .is_none_or(|v| !v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0))
    };
    matches!(request.method.as_str(), "GET" | "POST")
        && request.target.starts_with(crate::sio::PATH)
        && clean(&request.target)
        && header(&request.origin)
        && header(&request.content_type)
}

/// Sends `request` to this process's own listener at `local` and reads its answer.
fn replay(
    local: SocketAddr,
    wait: Duration,
    request: &ForwardedRequest,
) -> std::io::Result<RelayedAnswer> {
    if !replayable(request) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a polling request",
        ));
    }
    let mut stream = TcpStream::connect_timeout(&local, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(wait))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {local}\r\nConnection: close\r\nContent-Length: {}\r\n",
        request.method,
        request.target,
        request.body.len()
    );
    if let Some(origin) = &request.origin {
        head.push_str(&format!("Origin: {origin}\r\n"));
    }
    if let Some(ctype) = &request.content_type {
        head.push_str(&format!("Content-Type: {ctype}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&request.body)?;
    let mut raw = Vec::new();
    stream.take(MAX_ANSWER).read_to_end(&mut raw)?;
    parse_answer(&raw)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "unreadable answer"))
}

/// An HTTP answer's status, content type, other header lines and body.
fn parse_answer(raw: &[u8]) -> Option<RelayedAnswer> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_len) = response.parse(raw).ok()? else {
        return None;
    };
    let mut answer = RelayedAnswer {
        status: response.code?,
        content_type: String::new(),
        extra: Vec::new(),
        body: Vec::new(),
    };
    let mut length = None;
    for h in response.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        match name.as_str() {
            "content-type" => answer.content_type = String::from_utf8_lossy(h.value).into(),
            "content-length" => length = std::str::from_utf8(h.value).ok()?.trim().parse().ok(),
            _ if OWN_HEADERS.contains(&name.as_str()) => {}
            _ => {
                answer.extra.extend_from_slice(h.name.as_bytes());
                answer.extra.extend_from_slice(b": ");
                answer.extra.extend_from_slice(h.value);
                answer.extra.extend_from_slice(b"\r\n");
            }
        }
    }
    let body = &raw[head_len..];
    let length = length.unwrap_or(body.len());
    if length > body.len() {
        return None; // Cut short (past MAX_ANSWER, or the connection broke).
    }
    answer.body = body[..length].to_vec();
    Some(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_keeps_its_status_type_headers_and_body() {
        let raw = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\
            Content-Length: 41\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n\
            {\"code\":1,\"message\":\"Session ID unknown\"}";
        let a = parse_answer(raw).unwrap();
        assert_eq!(a.status, 400);
        assert_eq!(a.content_type, "application/json");
        assert_eq!(a.extra, b"Access-Control-Allow-Origin: *\r\n");
        assert_eq!(a.body, br#"{"code":1,"message":"Session ID unknown"}"#);
        assert_eq!(parse_answer(b"HTTP/1.1 200"), None);
    }

    #[test]
    fn only_clean_polling_requests_are_replayed() {
        let ok = ForwardedRequest {
            method: "POST".into(),
            target: "/socket.io/?EIO=4&transport=polling&sid=x".into(),
            origin: Some("https://a.example".into()),
            content_type: Some("text/plain;charset=UTF-8".into()),
            body: b"40".to_vec(),
        };
        assert!(replayable(&ok));
        let bad = |f: &dyn Fn(&mut ForwardedRequest)| {
            let mut r = ok.clone();
            f(&mut r);
            assert!(!replayable(&r), "{r:?}");
        };
        bad(&|r| r.method = "DELETE".into());
        bad(&|r| r.method = "GET /x HTTP/1.1\r\nX:".into());
        bad(&|r| r.target = "/admin/drain".into());
        bad(&|r| r.target = "/socket.io/ HTTP/1.1\r\nHost: x\r\n\r\nGET /".into());
        bad(&|r| r.origin = Some("a\r\nX-Injected: 1".into()));
        bad(&|r| r.content_type = Some("text/plain\nX: 1".into()));
    }

    #[test]
    fn a_tag_in_use_is_not_picked() {
        let mut asked = 0;
        let tag = pick_tag(
            |_| {
                asked += 1;
                Some(usize::from(asked < 3))
            },
            "k",
        );
        assert_eq!(asked, 3);
        assert!(crate::engineio::sid::is_tag(&tag));
        // Unreachable bus: a random tag at once.
        let mut tries = 0;
        pick_tag(
            |_| {
                tries += 1;
                None
            },
            "k",
        );
        assert_eq!(tries, 1);
    }
}
