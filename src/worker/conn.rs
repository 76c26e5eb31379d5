//! One connection's record: its phase, its lazily allocated out-queue, a deadline.
//!
//! Phases and what ends them:
//! - `Handshake(head)`: reading the request head (`head` only holds a partial head, and
//!   is empty when the head arrives in one read). Ends in `Open`, or a refusal → `Linger`.
//!   Deadline: the handshake timeout (→ 408).
//! - `Open(reader)`: frames flow. Deadline: idle timeout (→ ping, then → close 1001).
//! - `Closing(reader)`: we sent a close and wait for the peer's (data is discarded).
//!   Deadline: close timeout (→ TCP close).
//! - `Linger`: the close handshake is done or the connection failed. Once the out-queue
//!   drains we send FIN and wait for the peer's FIN, discarding input. Deadline: close
//!   timeout (→ TCP close).
//! - `Held`: a plain HTTP request (an Engine.IO polling GET, say) the app answers later
//!   (`Conns::respond`), after which the connection reads its next request (`Handshake`,
//!   keep-alive) or lingers. Input while held closes it (no pipelining behind a held
//!   request). Deadline: idle timeout (→ TCP close).
//! - `Moving`: the request belongs to another worker (`App::owner`); reading stopped and
//!   the socket is handed over at the next flush with the bytes read so far.
//!
//! Mailboxes (`MAILBOX`): a slot in `Open` with no socket, standing for a session whose
//! transport comes and goes (Engine.IO polling). It is in rooms and gets broadcasts like a
//! connection; at the flush its frames go to `App::on_mailbox` instead of a socket.
//!
//! An idle open connection owns no heap memory: the reader's buffers and the out-queue
//! are empty until a partial frame or a refused write needs them.

use crate::ws::Reader;

use super::outbox::OutQueue;

pub enum Phase {
    Handshake(Vec<u8>),
    Open(Reader),
    Closing(Reader),
    Linger,
    Held,
    Moving,
}

pub struct Conn {
    pub phase: Phase,
    pub out: OutQueue,
    pub generation: u32,
    /// When the phase's timeout fires, in worker ticks.
    pub deadline: u32,
    pub flags: u16,
}

/// A ping was sent for idleness and no input has come since.
pub const PINGED: u16 = 1;
/// Reading is paused until the out-queue drains.
pub const READ_PAUSED: u16 = 2;
/// FIN has been sent.
pub const SHUT: u16 = 4;
/// Reading is paused until this worker's fabric backlog drains.
pub const FABRIC_PAUSED: u16 = 8;
/// The out-queue is over the cap; the grace period runs (see `Core::over_cap`).
pub const OVER_CAP: u16 = 16;
/// Condemned as a slow consumer: no more data is queued; a 1008 close follows.
pub const SLOW: u16 = 32;
/// Its own input produced output this turn (a reply): the flush writes it before the
/// turn's pure deliveries, so a request's answer never waits for a whole fan-out.
pub const REPLIED: u16 = 64;
/// No socket: a session's stand-in (see the module doc).
pub const MAILBOX: u16 = 128;
/// Has answered a plain HTTP request: an idle keep-alive wait ends silently (no 408).
pub const SERVED: u16 = 256;
/// The client asked to close after the current plain HTTP request.
pub const CLOSE_AFTER: u16 = 512;
/// A plain HTTP request's head is in and its body is arriving (`App::on_http_head` ran).
pub const BODY_PENDING: u16 = 1024;

// The budget that keeps an idle connection small: checked at compile time.
const _: () = assert!(std::mem::size_of::<Conn>() <= 112);

impl Conn {
    pub fn new(generation: u32, deadline: u32) -> Conn {
        Conn {
            phase: Phase::Handshake(Vec::new()),
            out: OutQueue::default(),
            generation,
            deadline,
            flags: 0,
        }
    }

    /// `Open(reader)` → `Closing(reader)`; `false`, and no change, in any other phase.
    pub fn start_closing(&mut self) -> bool {
        match std::mem::replace(&mut self.phase, Phase::Linger) {
            Phase::Open(reader) => {
                self.phase = Phase::Closing(reader);
                true
            }
            other => {
                self.phase = other;
                false
            }
        }
    }

    pub fn has(&self, flag: u16) -> bool {
        self.flags & flag != 0
    }

    pub fn set(&mut self, flag: u16, on: bool) {
        if on {
            self.flags |= flag;
        } else {
            self.flags &= !flag;
        }
    }
}
