//! Polling requests for sessions of another process on the Redis bus: forwarded to
//! the owner (which applies every session rule itself, as for its own clients), while
//! the client's connection waits here for the answer to come back.
//!
//! A forwarded request waits at most `ACCEPT_WAIT` (checked each sweep, 250 ms) for
//! the owner to take it (an unknown or dead owner: 400 `Session ID unknown`, and the
//! client opens a new session wherever it lands), then as long as a long-poll can take.
//! Invariants: at most `MAX_FORWARDED` requests wait per worker; an entry goes with its
//! answer, its deadline or its connection, and the relay forgets it then too; an event
//! is applied only to the request it was for (matched by id: a connection answered
//! here may carry another request by the time a late answer comes); an owner's answer
//! reaches the client only with a polling status and CORS/caching headers, none that
//! could end the head early.

use std::time::{Duration, Instant};

use crate::engineio::request::ErrorCode;
use crate::engineio::sid::ProcessTag;
use crate::http::Request;
use crate::runtime::ConnId;
use crate::worker::Conns;

use super::Server;
use super::io::{ForwardEvent, Forwarded, ForwardedRequest, RelayedAnswer};

/// How long the owner has to take a forwarded request.
pub const ACCEPT_WAIT: Duration = Duration::from_secs(1);
/// Forwarded requests one worker keeps waiting at most; past it: 503.
pub const MAX_FORWARDED: usize = 4096;
/// Beyond a long-poll's own bound, what an answer may take to come back.
const ANSWER_SLACK: Duration = Duration::from_secs(5);

/// A forwarded request's connection, waiting.
pub(super) struct Waiting {
    /// The relay's id for it.
    id: u64,
    deadline: Instant,
    /// The CORS header lines its answer needs if it fails here.
    cors: Vec<u8>,
}

/// Header lines an owner's answer may carry to the client (CORS and caching); others
/// are dropped.
const RELAYED_HEADERS: [&str; 3] = ["access-control-", "vary", "cache-control"];

/// `answer` as it may reach the client: a status a polling answer has, a content type
/// and header lines that cannot end the head early, only the headers Throng writes.
fn sanitized(answer: RelayedAnswer) -> Option<RelayedAnswer> {
    let clean = |b: &[u8]| !b.iter().any(|&c| c == b'\r' || c == b'\n' || c == 0);
    if !matches!(answer.status, 200 | 204 | 400 | 403 | 413 | 503)
        || !clean(answer.content_type.as_bytes())
    {
        return None;
    }
    let mut extra = Vec::with_capacity(answer.extra.len());
    for line in answer.extra.split(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&c| c == b':') else {
            continue;
        };
        let name = String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase();
        if clean(line) && RELAYED_HEADERS.iter().any(|h| name.starts_with(h)) {
            extra.extend_from_slice(line);
            extra.extend_from_slice(b"\r\n");
        }
    }
    Some(RelayedAnswer { extra, ..answer })
}

fn header(value: Option<&[u8]>) -> Option<String> {
    value.map(|v| String::from_utf8_lossy(v).into_owned())
}

impl Server {
    /// Sends polling request `req` on `id` for a session of process `owner` there;
    /// the connection waits for the answer.
    pub(super) fn forward_polling(
        &mut self,
        conns: &mut Conns<'_>,
        id: ConnId,
        req: &Request<'_>,
        body: &[u8],
        owner: ProcessTag,
        cors: Vec<u8>,
    ) {
        if self.forwarded.len() >= MAX_FORWARDED {
            conns.respond(id, 503, "text/plain", &cors, b"too many forwarded requests");
            return;
        }
        if !matches!(req.method, "GET" | "POST") {
            return self.refuse(conns, id, &cors, ErrorCode::BadRequest);
        }
        let request = ForwardedRequest {
            method: req.method.to_string(),
            target: req.target.to_string(),
            origin: header(req.origin),
            content_type: header(req.content_type),
            body: body.to_vec(),
        };
        let io = self.registry.io_ref();
        let sent = io
            .relay()
            .and_then(|relay| relay.forward(&owner, request, (self.worker, id)));
        let Some(forward_id) = sent else {
            return self.refuse(conns, id, &cors, ErrorCode::UnknownSid);
        };
        let deadline = Instant::now() + ACCEPT_WAIT;
        let waiting = Waiting {
            id: forward_id,
            deadline,
            cors,
        };
        if let Some(stale) = self.forwarded.insert(id, waiting) {
            self.cancel(stale.id);
        }
    }

    /// Tells the relay to forget forwarded request `id`.
    fn cancel(&self, id: u64) {
        if let Some(relay) = self.registry.io_ref().relay() {
            relay.cancel_forward(id);
        }
    }

    /// The connection `conn` went away: its forwarded request, if any, is forgotten.
    pub(super) fn forget_forwarded(&mut self, conn: ConnId) {
        if let Some(w) = self.forwarded.remove(&conn) {
            self.cancel(w.id);
        }
    }

    /// What became of a request forwarded from connection `conn`.
    pub(super) fn on_forwarded(&mut self, conns: &mut Conns<'_>, forwarded: Forwarded) {
        let Forwarded { conn, id, event } = forwarded;
        if self.forwarded.get(&conn).is_none_or(|w| w.id != id) {
            return; // An older request's, on a connection that has moved on.
        }
        match event {
            ForwardEvent::Accepted => {
                let wait = self.config.ping_interval + self.config.ping_timeout + ANSWER_SLACK;
                if let Some(w) = self.forwarded.get_mut(&conn) {
                    w.deadline = Instant::now() + wait;
                }
            }
            ForwardEvent::Answered(answer) => {
                let Some(w) = self.forwarded.remove(&conn) else {
                    return;
                };
                match sanitized(answer) {
                    Some(a) => {
                        conns.respond(conn, a.status, &a.content_type, &a.extra, &a.body);
                    }
                    None => self.refuse(conns, conn, &w.cors, ErrorCode::BadRequest),
                }
            }
            ForwardEvent::Failed => {
                if let Some(w) = self.forwarded.remove(&conn) {
                    self.refuse(conns, conn, &w.cors, ErrorCode::UnknownSid);
                }
            }
        }
    }

    /// Answers the forwarded requests whose owner did not take them, or whose answer
    /// did not come back, in time: 400 `Session ID unknown`.
    pub(super) fn expire_forwarded(&mut self, conns: &mut Conns<'_>, now: Instant) {
        if self.forwarded.values().all(|w| w.deadline > now) {
            return;
        }
        let late: Vec<ConnId> = self
            .forwarded
            .iter()
            .filter(|(_, w)| w.deadline <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in late {
            if let Some(w) = self.forwarded.remove(&id) {
                self.cancel(w.id);
                self.refuse(conns, id, &w.cors, ErrorCode::UnknownSid);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, ctype: &str, extra: &[u8]) -> RelayedAnswer {
        RelayedAnswer {
            status,
            content_type: ctype.into(),
            extra: extra.to_vec(),
            body: b"ok".to_vec(),
        }
    }

    #[test]
    fn an_owners_answer_keeps_only_what_a_polling_answer_has() {
        let a = sanitized(answer(
            200,
            "text/plain; charset=UTF-8",
            b"Access-Control-Allow-Origin: https://a.example\r\nSet-Cookie: x=1\r\nVary: Origin\r\n",
        ))
        .unwrap();
        assert_eq!(
            a.extra,
            b"Access-Control-Allow-Origin: https://a.example\r\nVary: Origin\r\n"
        );
        assert!(sanitized(answer(302, "text/plain", b"")).is_none());
        assert!(sanitized(answer(200, "text/plain\r\nX: 1", b"")).is_none());
        let split = sanitized(answer(200, "text/plain", b"Vary: a\rX-Injected: 1\r\n")).unwrap();
        assert!(
            split.extra.is_empty(),
            "{:?}",
            String::from_utf8_lossy(&split.extra)
        );
    }
}
