//! Polling requests for sessions of another process on the Redis bus: forwarded to
//! the owner (which applies every session rule itself, as for its own clients), while
//! the client's connection waits here for the answer to come back.
//!
//! A forwarded request waits at most `ACCEPT_WAIT` for the owner to take it (an
//! unknown or dead owner: 400 `Session ID unknown`, and the client opens a new session
//! wherever it lands), then as long as a long-poll can take. Invariants: at most
//! `MAX_FORWARDED` requests wait per worker; an entry goes with its answer, its
//! deadline or its connection.

use std::time::{Duration, Instant};

use crate::engineio::request::ErrorCode;
use crate::engineio::sid::Sid;
use crate::http::Request;
use crate::runtime::ConnId;
use crate::worker::Conns;

use super::Server;
use super::io::{ForwardEvent, Forwarded, ForwardedRequest};

/// How long the owner has to take a forwarded request.
pub const ACCEPT_WAIT: Duration = Duration::from_secs(1);
/// Forwarded requests one worker keeps waiting at most; past it: 503.
pub const MAX_FORWARDED: usize = 4096;
/// Beyond a long-poll's own bound, what an answer may take to come back.
const ANSWER_SLACK: Duration = Duration::from_secs(5);

/// A forwarded request's connection, waiting.
pub(super) struct Waiting {
    deadline: Instant,
    /// The CORS header lines its answer needs if it fails here.
    cors: Vec<u8>,
}

fn header(value: Option<&[u8]>) -> Option<String> {
    value.map(|v| String::from_utf8_lossy(v).into_owned())
}

impl Server {
    /// Sends polling request `req` on `id` for `sid`, a session of another process,
    /// to its owner; the connection waits for the answer.
    pub(super) fn forward_polling(
        &mut self,
        conns: &mut Conns<'_>,
        id: ConnId,
        req: &Request<'_>,
        body: &[u8],
        sid: &Sid,
        cors: Vec<u8>,
    ) {
        if self.forwarded.len() >= MAX_FORWARDED {
            conns.respond(id, 503, "text/plain", &cors, b"too many forwarded requests");
            return;
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
            .is_some_and(|relay| relay.forward(&sid.tag(), request, (self.worker, id)));
        if !sent {
            return self.refuse(conns, id, &cors, ErrorCode::UnknownSid);
        }
        let deadline = Instant::now() + ACCEPT_WAIT;
        self.forwarded.insert(id, Waiting { deadline, cors });
    }

    /// What became of a request forwarded from connection `conn`.
    pub(super) fn on_forwarded(&mut self, conns: &mut Conns<'_>, forwarded: Forwarded) {
        let Forwarded { conn, event } = forwarded;
        match event {
            ForwardEvent::Accepted => {
                let wait = self.config.ping_interval + self.config.ping_timeout + ANSWER_SLACK;
                if let Some(w) = self.forwarded.get_mut(&conn) {
                    w.deadline = Instant::now() + wait;
                }
            }
            ForwardEvent::Answered(answer) => {
                if self.forwarded.remove(&conn).is_some() {
                    let ctype = answer.content_type.as_str();
                    conns.respond(conn, answer.status, ctype, &answer.extra, &answer.body);
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
                self.refuse(conns, id, &w.cors, ErrorCode::UnknownSid);
            }
        }
    }
}
