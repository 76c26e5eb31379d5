//! Requests between servers on the bus: those other nodes and emitters send here
//! (`serve`), and those this node asks of the others (`Ask`, `publish_ask`, and the
//! answers in `Pending`), in the shapes of Node's `@socket.io/redis-adapter`.
//!
//! Answers are given only on namespaces with a counted subscription (the static
//! ones, and dynamic ones while they have a socket here): Node waits for `serverCount() - 1` answers and counts whatever comes, so an
//! answer from a node it did not count would end its wait early, with one server's
//! sockets missing.
//!
//! Invariants: every `Reply` runs exactly once (an answer, a timeout after
//! `REQUEST_TIMEOUT`, or a failure); at most `MAX_PENDING` questions wait at a time;
//! replies run with no lock held.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::value::RawValue;

use super::Bridge;
use super::classic::{Request, Response};
use crate::sio::query::{AckRound, Asking};
use crate::sio::{Gathered, Io, OnClientAck, Question, Registry, Relayed, Reply, ServerAck};
use crate::sio::{SocketsAction, SocketsOp};

/// How long a question waits for every other server (the adapter's `requestsTimeout`).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Questions waiting for answers at most; more fail at once.
const MAX_PENDING: usize = 10_000;
/// Longest a broadcast with an ack from another node keeps its clients' acks awaited.
const MAX_ACK_TIMEOUT: Duration = Duration::from_secs(600);

/// A question for the other servers, queued for the publisher thread.
pub(super) struct Ask {
    pub namespace: String,
    pub question: Question,
    pub reply: Reply,
}

/// A reply that says why nothing could be asked.
pub(super) fn failed(why: &str) -> Gathered {
    Gathered {
        error: Some(why.to_string()),
        ..Gathered::default()
    }
}

enum Kind {
    Sockets,
    Rooms,
    ServerSideEmit,
    /// A broadcast with an ack: counts and acks go to the round until the deadline.
    Acks(Arc<AckRound>),
}

struct Waiting {
    kind: Kind,
    expected: usize,
    got: usize,
    gathered: Gathered,
    deadline: Instant,
    /// `None` for `Kind::Acks` (its round is its reply).
    reply: Option<Reply>,
}

impl Waiting {
    /// Ends the wait with what came, `missing` and `why`. `true` if it was still open.
    fn settle(mut self, why: String) -> bool {
        match (&self.kind, self.reply.take()) {
            (Kind::Acks(round), _) => round.expire(&why),
            (_, Some(reply)) => {
                self.gathered.missing += self.expected - self.got;
                self.gathered.error = Some(why);
                reply(self.gathered);
                true
            }
            (_, None) => false,
        }
    }
}

/// Questions asked by this node, by request id.
#[derive(Default)]
pub(super) struct Pending {
    waiting: Mutex<HashMap<String, Waiting>>,
}

impl Pending {
    /// An answer from another server, on a response channel.
    pub fn on_response(&self, response: Response) {
        let id = response.request_id().to_string();
        let done = {
            let Ok(mut waiting) = self.waiting.lock() else {
                return;
            };
            let Some(w) = waiting.get_mut(&id) else {
                return; // Another node's question, or one already settled.
            };
            match (&w.kind, response) {
                (Kind::Sockets, Response::Sockets { sockets, .. }) => {
                    w.gathered.sockets.extend(
                        sockets
                            .into_iter()
                            .filter_map(|s| serde_json::from_value(s).ok()),
                    );
                }
                (Kind::Rooms, Response::Rooms { rooms, .. }) => w.gathered.rooms.extend(rooms),
                (Kind::ServerSideEmit, Response::ServerSideEmit { data, .. }) => {
                    if let Ok(data) = RawValue::from_string(data) {
                        w.gathered.replies.push(data);
                    }
                }
                (Kind::Acks(round), response) => {
                    // Applied with the lock released: the round's callback may run.
                    let round = Arc::clone(round);
                    drop(waiting);
                    match response {
                        Response::ClientCount { count, .. } => round.counted(count),
                        Response::ClientAck { packet, .. } => {
                            if let Ok(v) = RawValue::from_string(packet) {
                                round.acked(Some(&v));
                            }
                        }
                        _ => {}
                    }
                    if round.is_done() {
                        // Its slot is free at once, not at its deadline.
                        if let Ok(mut waiting) = self.waiting.lock() {
                            waiting.remove(&id);
                        }
                    }
                    return;
                }
                _ => return,
            }
            w.got += 1;
            if w.got < w.expected {
                return;
            }
            waiting.remove(&id)
        };
        if let Some(Waiting {
            reply: Some(reply),
            gathered,
            ..
        }) = done
        {
            reply(gathered);
        }
    }

    /// Settles the questions whose time is up, with what came and how much did not.
    pub fn expire(&self, bridge: &Bridge) {
        let now = Instant::now();
        let expired: Vec<Waiting> = {
            let Ok(mut waiting) = self.waiting.lock() else {
                return;
            };
            if waiting.values().all(|w| w.deadline > now) {
                return;
            }
            let ids: Vec<String> = waiting
                .iter()
                .filter(|(_, w)| w.deadline <= now)
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| waiting.remove(id)).collect()
        };
        for w in expired {
            let why = format!(
                "timeout reached: only {} responses received out of {}",
                w.got, w.expected
            );
            if w.settle(why) {
                bridge
                    .counters
                    .request_timeouts
                    .fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Settles every waiting question with `why` (the link went down: answers sent to
    /// it are lost).
    pub fn fail_all(&self, why: &str) {
        let all: Vec<Waiting> = match self.waiting.lock() {
            Ok(mut waiting) => waiting.drain().map(|(_, w)| w).collect(),
            Err(_) => return,
        };
        for w in all {
            w.settle(why.to_string());
        }
    }
}

/// Counts the servers (`PUBSUB NUMSUB` of the request channel), registers the
/// question and publishes it. Its reply runs whatever happens; an `Err` is the link's.
pub(super) fn publish_ask(
    bridge: &Bridge,
    con: &mut redis::Connection,
    ask: Ask,
) -> redis::RedisResult<()> {
    let (subcommand, counted_on) = bridge.wire.count(&ask.namespace);
    let servers = match redis::cmd("PUBSUB")
        .arg(subcommand)
        .arg(&counted_on)
        .query::<(String, usize)>(con)
    {
        Ok((_, n)) => n,
        Err(e) => {
            (ask.reply)(failed(&format!("Redis: {e}")));
            return Err(e);
        }
    };
    // This node is one of them only if it holds a counted subscription there.
    let counted_here = bridge.counted_in(&ask.namespace);
    let others = servers.saturating_sub(usize::from(counted_here));
    let gathered = Gathered {
        servers: others + 1,
        ..Gathered::default()
    };
    if others == 0 || matches!(ask.question, Question::ServerCount) {
        (ask.reply)(gathered);
        return Ok(());
    }
    let request_id = super::node_uid();
    let namespace = ask.namespace.clone();
    let mut deadline = Instant::now() + REQUEST_TIMEOUT;
    let (kind, out) = match ask.question {
        Question::Sockets { rooms, except } => (
            Kind::Sockets,
            bridge.wire.request(
                &ask.namespace,
                &Request::Fetch {
                    uid: None,
                    request_id: request_id.clone(),
                    namespace,
                    rooms,
                    except,
                    ids_only: false,
                },
            ),
        ),
        Question::AllRooms => (
            Kind::Rooms,
            bridge.wire.request(
                &ask.namespace,
                &Request::AllRooms {
                    uid: None,
                    request_id: request_id.clone(),
                    namespace,
                },
            ),
        ),
        Question::ServerSideEmit { elements } => (
            Kind::ServerSideEmit,
            bridge.wire.request(
                &ask.namespace,
                &Request::ServerSideEmit {
                    namespace,
                    uid: bridge.wire.uid.clone(),
                    request_id: Some(request_id.clone()),
                    elements: elements.iter().map(|e| e.get().to_string()).collect(),
                },
            ),
        ),
        Question::EmitWithAck {
            rooms,
            except,
            elements,
            attachments,
            timeout,
            round,
        } => {
            deadline = Instant::now() + timeout;
            let rooms: Vec<&str> = rooms.iter().map(String::as_str).collect();
            let except: Vec<&str> = except.iter().map(String::as_str).collect();
            let elements: Vec<&[u8]> = elements.iter().map(|e| e.get().as_bytes()).collect();
            let timeout_ms = timeout.as_millis() as u64;
            let b = Relayed {
                namespace: &namespace,
                rooms,
                except,
                volatile: false,
                elements: &elements,
                attachments: &attachments,
            };
            let out = bridge.wire.broadcast(&b, Some((&request_id, timeout_ms)));
            (Kind::Acks(round), out)
        }
        Question::ServerCount => return Ok(()),
    };
    let Some((channel, bytes)) = out else {
        (ask.reply)(failed(
            "this question has no form in this --redis-mode, or does not encode",
        ));
        return Ok(());
    };
    // A broadcast with an ack is told the server count once it is out; its counts and
    // acks then go to its round. Other questions wait here for their one reply.
    let (reply, told_when_sent) = match kind {
        Kind::Acks(_) => (None, Some(ask.reply)),
        _ => (Some(ask.reply), None),
    };
    {
        let Ok(mut waiting) = bridge.pending.waiting.lock() else {
            return Ok(());
        };
        if waiting.len() >= MAX_PENDING {
            drop(waiting);
            if let Some(reply) = reply.or(told_when_sent) {
                reply(failed("too many requests waiting for answers"));
            }
            return Ok(());
        }
        waiting.insert(
            request_id.clone(),
            Waiting {
                kind,
                expected: others,
                got: 0,
                gathered,
                deadline,
                reply,
            },
        );
    }
    let sent = redis::cmd(bridge.wire.publish_command())
        .arg(&channel)
        .arg(bytes)
        .query::<()>(con);
    match sent {
        Ok(()) => {
            if let Some(told) = told_when_sent {
                told(Gathered {
                    servers: others + 1,
                    ..Gathered::default()
                });
            }
            Ok(())
        }
        Err(e) => {
            let lost = bridge
                .pending
                .waiting
                .lock()
                .ok()
                .and_then(|mut w| w.remove(&request_id));
            let why = format!("Redis: {e}");
            if let Some(mut w) = lost
                && let Some(reply) = w.reply.take()
            {
                w.gathered.missing = w.expected;
                w.gathered.error = Some(why.clone());
                reply(w.gathered);
            }
            if let Some(told) = told_when_sent {
                told(failed(&why));
            }
            Err(e)
        }
    }
}

/// Publishes an answer to `requester`'s request (never waits).
fn respond(bridge: &Bridge, namespace: &str, requester: &str, response: &Response) {
    if let Some((channel, bytes)) = bridge.wire.response(namespace, requester, response) {
        bridge.enqueue(channel, bytes);
    }
}

/// `respond` with a request's one answer, counted in `/metrics`.
fn answer(bridge: &Bridge, namespace: &str, requester: &str, response: &Response) {
    bridge
        .counters
        .requests_answered
        .fetch_add(1, Ordering::Relaxed);
    respond(bridge, namespace, requester, response);
}

/// The answer to ALL_ROOMS `request_id`: every room gathered.
fn all_rooms_answer(request_id: String) -> impl FnOnce(Gathered) -> Response + Send + 'static {
    move |g| Response::Rooms {
        request_id,
        rooms: g.rooms,
    }
}

/// Who answers a request, and to whom.
struct Answerer<'a> {
    bridge: &'a Arc<Bridge>,
    io: &'a Io,
    asker: Option<&'a str>,
}

impl Answerer<'_> {
    /// Asks every worker `what` about the sockets of `namespace` in any of `rooms`
    /// and none of `except`, then answers with `response` of what they gathered.
    fn gather(
        &self,
        namespace: &str,
        (rooms, except): (Vec<String>, Vec<String>),
        what: Asking,
        response: impl FnOnce(Gathered) -> Response + Send + 'static,
    ) {
        let (to, ns) = (Arc::clone(self.bridge), namespace.to_string());
        let asker = self.asker.unwrap_or_default().to_string();
        let reply = Box::new(move |g: Gathered| answer(&to, &ns, &asker, &response(g)));
        self.io.gather(namespace, rooms, except, what, None, reply);
    }
}

/// A request from another node or an emitter, applied to this process's sockets and
/// answered when it wants an answer and `counted` (it came on a counted channel).
pub(super) fn serve(bridge: &Arc<Bridge>, registry: &Registry, request: Request, counted: bool) {
    // Its own requests were applied here when sent; answers are given only where
    // this node is counted; namespaces not served here are not ours to answer.
    if request.sender() == Some(bridge.wire.uid.as_str())
        || (request.wants_answers()
            && !counted
            && !matches!(request, Request::ServerSideEmit { .. }))
        || !registry.serves(request.namespace())
    {
        return;
    }
    let io = registry.io();
    let op = match request {
        Request::Rooms {
            namespace,
            rooms,
            except,
            targets,
            leave,
            ..
        } => SocketsOp {
            namespace,
            rooms,
            except,
            action: if leave {
                SocketsAction::Leave(targets)
            } else {
                SocketsAction::Join(targets)
            },
        },
        Request::Disconnect {
            namespace,
            rooms,
            except,
            close,
            ..
        } => SocketsOp {
            namespace,
            rooms,
            except,
            action: SocketsAction::Disconnect { close },
        },
        Request::ServerSideEmit {
            namespace,
            uid,
            request_id,
            elements,
        } => {
            let raw: Vec<&RawValue> = elements
                .iter()
                .filter_map(|e| serde_json::from_str(e).ok())
                .collect();
            if raw.len() != elements.len() {
                return;
            }
            let ack = match request_id {
                Some(request_id) if counted => {
                    let (bridge, ns, asker) = (Arc::clone(bridge), namespace.clone(), uid.clone());
                    ServerAck::new(move |data: &RawValue| {
                        let data = data.get().to_string();
                        let response = Response::ServerSideEmit { request_id, data };
                        answer(&bridge, &ns, &asker, &response);
                    })
                }
                _ => ServerAck::none(),
            };
            registry.dispatch_server_event(&namespace, &raw, ack);
            return;
        }
        Request::Fetch {
            ref uid,
            request_id,
            namespace,
            rooms,
            except,
            ids_only,
        } => {
            let asker = uid.as_deref();
            let by = Answerer {
                bridge,
                io: &io,
                asker,
            };
            by.gather(&namespace, (rooms, except), Asking::Sockets, move |g| {
                let sockets = g
                    .sockets
                    .into_iter()
                    .filter_map(|s| match ids_only {
                        true => Some(serde_json::Value::String(s.id)),
                        false => serde_json::to_value(s).ok(),
                    })
                    .collect();
                Response::Sockets {
                    request_id,
                    sockets,
                }
            });
            return;
        }
        Request::AllRooms {
            ref uid,
            request_id,
            namespace,
        } => {
            let asker = uid.as_deref();
            let by = Answerer {
                bridge,
                io: &io,
                asker,
            };
            let rooms = all_rooms_answer(request_id);
            by.gather(&namespace, (Vec::new(), Vec::new()), Asking::Rooms, rooms);
            return;
        }
        Request::BroadcastAck {
            request_id,
            message,
            timeout_ms,
        } => {
            let Ok(elements) = message
                .elements
                .iter()
                .map(|e| RawValue::from_string(e.clone()))
                .collect::<Result<Vec<_>, _>>()
            else {
                return;
            };
            let timeout = timeout_ms
                .map_or(REQUEST_TIMEOUT, Duration::from_millis)
                .min(MAX_ACK_TIMEOUT);
            let ns = message.namespace.clone();
            let on_ack: OnClientAck = {
                let (bridge, ns, request_id) = (Arc::clone(bridge), ns.clone(), request_id.clone());
                let asker = message.uid.clone();
                Arc::new(move |arg: Option<&RawValue>| {
                    let Some(arg) = arg else {
                        return; // The asker's own timeout covers clients that stay silent.
                    };
                    let response = Response::ClientAck {
                        request_id: request_id.clone(),
                        packet: arg.get().to_string(),
                        attachments: Vec::new(),
                    };
                    respond(&bridge, &ns, &asker, &response);
                })
            };
            let what = Asking::EmitWithAck {
                elements,
                attachments: message.attachments,
                timeout,
                on_ack,
            };
            let asker = message.uid;
            let by = Answerer {
                bridge,
                io: &io,
                asker: Some(&asker),
            };
            let addressed = (message.rooms, message.except);
            by.gather(&ns, addressed, what, move |g| Response::ClientCount {
                request_id,
                count: g.clients,
            });
            return;
        }
    };
    let _ = io.apply_here(&op);
}
