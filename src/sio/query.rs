//! Questions about sockets, asked of every worker of this process and, through a
//! relay (the Redis bridge), of every other server: what Node's adapter calls
//! `fetchSockets`, `allRooms`, `serverCount`, `serverSideEmit` with an ack and
//! broadcast with an ack.
//!
//! Asking never blocks: the question is posted to every worker's inbox with a shared
//! `Gather`; each worker answers its part on its own thread, and the last part to
//! arrive runs the asker's callback (on that worker's thread, or on the bridge's).
//! Callbacks must therefore not block either; they may call `Io` again.
//!
//! Invariants: a callback runs exactly once; a worker whose inbox is full counts as
//! missing rather than delaying the answer; answers hold only what the sockets keep
//! (their id, rooms, auth, the time they connected, their state if the namespace made
//! it serializable), so asking costs idle sockets nothing.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A socket as `fetchSockets` reports it, in the shape of Node's adapter
/// (`{id, handshake, rooms, data}`), from this process or another server.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FetchedSocket {
    pub id: String,
    #[serde(default)]
    pub handshake: FetchedHandshake,
    /// Its rooms by name, its own id among them (as Node lists them).
    #[serde(default)]
    pub rooms: Vec<String>,
    /// Node's `socket.data`; here the socket's state when the namespace was built with
    /// `Namespace::state_as_data`, else `{}`.
    #[serde(default = "empty_object")]
    pub data: serde_json::Value,
}

/// Node's `socket.handshake`. Throng keeps only what is listed as kept; the rest is
/// given as Node gives it for a client that sent nothing special (no headers are
/// kept, so that an idle socket stays small).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct FetchedHandshake {
    pub headers: serde_json::Value,
    /// `issued` as JavaScript's `Date.prototype.toString` writes it (in UTC).
    pub time: String,
    /// The peer's address (not kept here: empty).
    pub address: String,
    pub xdomain: bool,
    pub secure: bool,
    /// When the socket connected, in milliseconds since the epoch (kept).
    pub issued: u64,
    pub url: String,
    pub query: serde_json::Value,
    /// The CONNECT's auth object (kept, bounded).
    pub auth: serde_json::Value,
}

impl Default for FetchedHandshake {
    fn default() -> Self {
        FetchedHandshake {
            headers: empty_object(),
            time: String::new(),
            address: String::new(),
            xdomain: false,
            secure: false,
            issued: 0,
            url: String::new(),
            query: empty_object(),
            auth: empty_object(),
        }
    }
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// What came back from a question asked of several parties (workers, servers): the
/// value gathered from those that answered, and how many did not.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Answered<T> {
    pub value: T,
    /// Parties that did not answer in time (0: complete).
    pub missing: usize,
    /// Why some did not (a timeout, the Redis link down), for logs.
    pub error: Option<String>,
}

impl<T> Answered<T> {
    pub fn complete(value: T) -> Answered<T> {
        Answered {
            value,
            missing: 0,
            error: None,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.missing == 0 && self.error.is_none()
    }
}

/// The reply a server-side event handler owes when the sender asked for an ack
/// (`serverSideEmit(event, ...args, callback)` on a Node server). Only the first
/// answer counts, as in Node; dropping it unanswered leaves the sender waiting until
/// its timeout.
pub struct ServerAck {
    reply: Option<AnswerOnce>,
}

type AnswerOnce = Box<dyn FnOnce(&RawValue) + Send>;

impl ServerAck {
    /// No ack was asked for: answers go nowhere.
    pub fn none() -> ServerAck {
        ServerAck { reply: None }
    }

    pub(crate) fn new(reply: impl FnOnce(&RawValue) + Send + 'static) -> ServerAck {
        ServerAck {
            reply: Some(Box::new(reply)),
        }
    }

    /// Whether the sender waits for an answer.
    pub fn is_wanted(&self) -> bool {
        self.reply.is_some()
    }

    /// Answers with one JSON value.
    pub fn answer(mut self, value: &RawValue) {
        if let Some(reply) = self.reply.take() {
            reply(value);
        }
    }

    /// Answers with a `Serialize` value; `false` if it does not serialize.
    pub fn answer_ser<T: Serialize + ?Sized>(self, value: &T) -> bool {
        match serde_json::value::to_raw_value(value) {
            Ok(raw) => {
                self.answer(&raw);
                true
            }
            Err(_) => false,
        }
    }
}

/// A client's reply to a broadcast with an ack: its first argument (Node's adapter
/// carries no more), `null` when it sent none; `None` when it did not answer in time
/// or left first.
pub type OnClientAck = std::sync::Arc<dyn Fn(Option<&RawValue>) + Send + Sync>;

/// Calls its `OnClientAck` exactly once: with the reply, or with `None` when dropped
/// unanswered (the socket left, and its awaited acks with it).
pub(crate) struct ClientAckOnce(Option<OnClientAck>);

impl ClientAckOnce {
    pub fn new(on_ack: OnClientAck) -> ClientAckOnce {
        ClientAckOnce(Some(on_ack))
    }

    pub fn call(mut self, reply: Option<&RawValue>) {
        if let Some(f) = self.0.take() {
            f(reply);
        }
    }
}

impl Drop for ClientAckOnce {
    fn drop(&mut self) {
        if let Some(f) = self.0.take() {
            f(None);
        }
    }
}

/// The answer to a broadcast with an ack: every client's reply.
pub type AcksDone = Box<dyn FnOnce(Answered<Vec<Box<RawValue>>>) + Send>;

/// A broadcast with an ack in flight on every server: it is complete once every
/// server has said how many clients it reached and each of those clients answered or
/// gave up; or when the time is up (`expire`), with what came.
pub struct AckRound {
    state: Mutex<RoundState>,
}

struct RoundState {
    /// Servers that will report a count (this process included); unknown at first.
    servers: Option<usize>,
    counted: usize,
    clients: usize,
    replies: Vec<Box<RawValue>>,
    /// Clients of this process that did not answer in time or left.
    gone: usize,
    /// Why other servers could not be asked.
    error: Option<String>,
    done: Option<AcksDone>,
}

impl AckRound {
    pub(crate) fn new(done: AcksDone) -> AckRound {
        AckRound {
            state: Mutex::new(RoundState {
                servers: None,
                counted: 0,
                clients: 0,
                replies: Vec::new(),
                gone: 0,
                error: None,
                done: Some(done),
            }),
        }
    }

    /// Whether the round has ended (answered or expired).
    pub(crate) fn is_done(&self) -> bool {
        self.state.lock().map_or(true, |s| s.done.is_none())
    }

    /// How many servers will report a count.
    pub(crate) fn servers(&self, n: usize) {
        self.update(|s| s.servers = Some(n));
    }

    /// Other servers could not be asked (`why`): only this process's clients count.
    pub(crate) fn local_only(&self, why: Option<String>) {
        self.update(|s| {
            s.servers = Some(1);
            s.error = why;
        });
    }

    /// One server reached `clients` clients.
    pub(crate) fn counted(&self, clients: usize) {
        self.update(|s| {
            s.counted += 1;
            s.clients += clients;
        });
    }

    /// One client answered (`Some`), or gave up (`None`).
    pub(crate) fn acked(&self, reply: Option<&RawValue>) {
        self.update(|s| match reply {
            Some(v) => s.replies.push(v.to_owned()),
            None => s.gone += 1,
        });
    }

    /// The time is up: answers with what came. `true` if the round was still open.
    pub(crate) fn expire(&self, why: &str) -> bool {
        let finished = self.state.lock().ok().and_then(|mut s| {
            let done = s.done.take()?;
            let heard = s.replies.len() + s.gone;
            let missing = s.clients.saturating_sub(s.replies.len())
                + s.servers.unwrap_or(1).saturating_sub(s.counted);
            let answer = Answered {
                value: std::mem::take(&mut s.replies),
                missing,
                error: Some(format!(
                    "{why}: {} of {} clients answered, {} of {} servers counted",
                    heard - s.gone,
                    s.clients,
                    s.counted,
                    s.servers.unwrap_or(1)
                )),
            };
            Some((done, answer))
        });
        match finished {
            Some((done, answer)) => {
                done(answer);
                true
            }
            None => false,
        }
    }

    fn update(&self, f: impl FnOnce(&mut RoundState)) {
        let finished = self.state.lock().ok().and_then(|mut s| {
            f(&mut s);
            let complete = s.servers == Some(s.counted) && s.replies.len() + s.gone >= s.clients;
            if !complete {
                return None;
            }
            let done = s.done.take()?;
            let gone = s.gone;
            let late = (gone > 0).then(|| format!("{gone} clients did not answer in time"));
            let answer = Answered {
                value: std::mem::take(&mut s.replies),
                missing: gone,
                error: s.error.take().or(late),
            };
            Some((done, answer))
        });
        if let Some((done, answer)) = finished {
            done(answer);
        }
    }
}

/// What a worker is asked about the sockets of a namespace that are in any of
/// `rooms` (all if none) and in none of `except`.
pub(crate) struct Asked {
    pub namespace: String,
    pub rooms: Vec<String>,
    pub except: Vec<String>,
    pub what: Asking,
    pub gather: std::sync::Arc<Gather>,
}

pub(crate) enum Asking {
    /// The matching sockets (`fetchSockets`, and `SOCKETS` with ids only).
    Sockets,
    /// Every room of the namespace with a member here (`allRooms`).
    Rooms,
    /// Emit an event with an ack id to every matching socket; each reply goes to
    /// `on_ack`, and the part counts the sockets reached.
    EmitWithAck {
        /// The event's elements (name first), raw JSON with placeholders.
        elements: Vec<Box<RawValue>>,
        attachments: Vec<Bytes>,
        timeout: Duration,
        on_ack: OnClientAck,
    },
}

/// One party's part of an answer (a worker's, or the other servers' together), or
/// several merged.
#[derive(Default, Debug)]
pub struct Gathered {
    pub sockets: Vec<FetchedSocket>,
    pub rooms: Vec<String>,
    /// Answers to a server-side emit with an ack, one per server.
    pub replies: Vec<Box<RawValue>>,
    /// Sockets a broadcast with an ack reached.
    pub clients: usize,
    /// Servers on the bus, this one included (0: no bus was asked).
    pub servers: usize,
    /// Parties that did not answer.
    pub missing: usize,
    pub error: Option<String>,
}

impl Gathered {
    fn merge(&mut self, other: Gathered) {
        self.sockets.extend(other.sockets);
        self.rooms.extend(other.rooms);
        self.replies.extend(other.replies);
        self.clients += other.clients;
        self.servers += other.servers;
        self.missing += other.missing;
        if self.error.is_none() {
            self.error = other.error;
        }
    }

    /// What was gathered, as an `Answered` of `value`.
    pub(crate) fn answered<T>(self, value: impl FnOnce(Gathered) -> T) -> Answered<T> {
        let (missing, error) = (self.missing, self.error.clone());
        Answered {
            value: value(self),
            missing,
            error,
        }
    }
}

/// A question for the other servers of a bus (`Relay::ask`).
pub enum Question {
    /// `fetchSockets`: sockets in any of `rooms` (all if none), in none of `except`.
    Sockets {
        rooms: Vec<String>,
        except: Vec<String>,
    },
    /// `allRooms`.
    AllRooms,
    /// `serverCount`: only `Gathered::servers` is asked for.
    ServerCount,
    /// `serverSideEmit` with an ack: the event's raw JSON elements, name first.
    ServerSideEmit { elements: Vec<Box<RawValue>> },
    /// A broadcast with an ack to the sockets in any of `rooms` (all if none), in none
    /// of `except`: the reply carries the number of servers (`servers`) at once; the
    /// counts and acks of the others go to `round` until `timeout`.
    EmitWithAck {
        rooms: Vec<String>,
        except: Vec<String>,
        /// Raw JSON, name first, placeholders for `attachments`.
        elements: Vec<Box<RawValue>>,
        attachments: Vec<Bytes>,
        timeout: Duration,
        round: std::sync::Arc<AckRound>,
    },
}

/// How the answer to a `Question` comes back: called once, on any thread.
pub type Reply = Box<dyn FnOnce(Gathered) + Send>;

/// Collects the parts of `expected` parties; the last one in runs `done`.
pub(crate) struct Gather {
    remaining: AtomicUsize,
    parts: Mutex<Gathered>,
    done: Mutex<Option<Reply>>,
}

impl Gather {
    pub fn new(expected: usize, done: impl FnOnce(Gathered) + Send + 'static) -> Gather {
        Gather {
            remaining: AtomicUsize::new(expected),
            parts: Mutex::new(Gathered::default()),
            done: Mutex::new(Some(Box::new(done))),
        }
    }

    /// Adds one party's part; runs `done` when it is the last.
    pub fn add(&self, part: Gathered) {
        if let Ok(mut parts) = self.parts.lock() {
            parts.merge(part);
        }
        if self.remaining.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let mut all = self
            .parts
            .lock()
            .map(|mut p| std::mem::take(&mut *p))
            .unwrap_or_default();
        all.rooms.sort_unstable();
        all.rooms.dedup();
        let done = self.done.lock().ok().and_then(|mut d| d.take());
        if let Some(done) = done {
            done(all);
        }
    }
}

/// `ms` (since the epoch) as JavaScript's `Date.prototype.toString` writes it in UTC:
/// `Mon Nov 23 2026 17:26:02 GMT+0000 (Coordinated Universal Time)`.
pub(crate) fn js_date_string(ms: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = ms / 1000;
    let days = secs / 86_400;
    let (h, m, s) = (secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{} {} {:02} {} {:02}:{:02}:{:02} GMT+0000 (Coordinated Universal Time)",
        DAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
        day,
        year,
        h,
        m,
        s
    )
}

/// Year, month (1-12) and day of `days` since 1970-01-01 (the proleptic Gregorian
/// calendar; Howard Hinnant's published algorithm).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn dates_read_as_javascript_writes_them() {
        assert_eq!(
            js_date_string(0),
            "Thu Jan 01 1970 00:00:00 GMT+0000 (Coordinated Universal Time)"
        );
        // new Date(1795454762000).toString() with TZ=UTC
        assert_eq!(
            js_date_string(1_795_454_762_000),
            "Mon Nov 23 2026 17:26:02 GMT+0000 (Coordinated Universal Time)"
        );
        assert_eq!(
            js_date_string(951_782_400_000), // a leap day
            "Tue Feb 29 2000 00:00:00 GMT+0000 (Coordinated Universal Time)"
        );
    }

    #[test]
    fn the_last_part_runs_the_callback_once_with_everything() {
        let seen = Arc::new(Mutex::new(None));
        let out = Arc::clone(&seen);
        let gather = Gather::new(3, move |part: Gathered| {
            *out.lock().unwrap() = Some(part);
        });
        for (rooms, clients) in [(vec!["b", "a"], 1), (vec!["a"], 2)] {
            gather.add(Gathered {
                rooms: rooms.into_iter().map(String::from).collect(),
                clients,
                ..Gathered::default()
            });
            assert!(seen.lock().unwrap().is_none());
        }
        gather.add(Gathered {
            missing: 1,
            ..Gathered::default()
        });
        let part = seen.lock().unwrap().take().unwrap();
        assert_eq!(part.rooms, ["a", "b"]);
        assert_eq!((part.clients, part.missing), (3, 1));
    }

    #[test]
    fn an_ack_round_ends_when_every_server_counted_and_every_client_answered() {
        let seen = Arc::new(Mutex::new(None));
        let out = Arc::clone(&seen);
        let round = AckRound::new(Box::new(move |a| *out.lock().unwrap() = Some(a)));
        let one = RawValue::from_string("1".into()).unwrap();
        round.counted(2);
        round.acked(Some(&one));
        round.servers(2);
        round.acked(None);
        assert!(
            seen.lock().unwrap().is_none(),
            "the second server has not counted"
        );
        round.counted(1);
        assert!(
            seen.lock().unwrap().is_none(),
            "its client has not answered"
        );
        round.acked(Some(&one));
        let answered = seen.lock().unwrap().take().unwrap();
        assert_eq!(answered.value.len(), 2);
        assert_eq!(answered.missing, 1);
        assert!(!round.expire("late"), "a finished round stays finished");
    }

    #[test]
    fn an_expired_ack_round_gives_what_came_and_counts_the_rest() {
        let seen = Arc::new(Mutex::new(None));
        let out = Arc::clone(&seen);
        let round = AckRound::new(Box::new(move |a| *out.lock().unwrap() = Some(a)));
        round.servers(3);
        round.counted(4);
        round.acked(Some(RawValue::NULL));
        assert!(round.expire("timeout"));
        let answered = seen.lock().unwrap().take().unwrap();
        assert_eq!(answered.value.len(), 1);
        assert_eq!(answered.missing, 3 + 2, "3 clients and 2 servers");
        assert!(
            answered
                .error
                .unwrap()
                .starts_with("timeout: 1 of 4 clients")
        );
    }

    #[test]
    fn a_dropped_client_ack_counts_as_gone() {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&calls);
        let f: OnClientAck = Arc::new(move |r| log.lock().unwrap().push(r.is_some()));
        ClientAckOnce::new(Arc::clone(&f)).call(Some(RawValue::NULL));
        drop(ClientAckOnce::new(f));
        assert_eq!(*calls.lock().unwrap(), [true, false]);
    }

    #[test]
    fn a_fetched_socket_reads_and_writes_nodes_shape() {
        let node = r#"{"id":"x1","handshake":{"headers":{"host":"h"},"time":"t","address":"::1",
            "xdomain":false,"secure":false,"issued":5,"url":"/socket.io/?EIO=4","query":{"EIO":"4"},
            "auth":{"token":"k"}},"rooms":["x1","r"],"data":{"n":1}}"#;
        let s: FetchedSocket = serde_json::from_str(node).unwrap();
        assert_eq!(s.rooms, ["x1", "r"]);
        assert_eq!(s.handshake.auth["token"], "k");
        assert_eq!(s.data["n"], 1);
        let back: FetchedSocket =
            serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        // What an unusual server leaves out takes Node's defaults.
        let bare: FetchedSocket = serde_json::from_str(r#"{"id":"y"}"#).unwrap();
        assert_eq!(bare.data, empty_object());
    }
}
