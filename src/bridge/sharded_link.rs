//! The subscriber of `--redis-mode sharded`: one RESP3 connection holding `SSUBSCRIBE`s
//! on the channel and this node's answer channel of each static namespace (and each
//! dynamic one while it has a socket here), this process's forwarding channel, and the
//! channel of every public room with a member here (the census's changes are applied between
//! reads, as the adapter's `dynamic` mode does on `create-room`/`delete-room`).
//!
//! The `redis` crate's `PubSub` helper knows no sharded pub/sub, so this loop drives
//! the connection itself: sharded messages arrive as RESP3 pushes (`smessage`). A quiet
//! link is probed by subscribing again to a channel it already holds (the confirmation
//! is a push too); no answer within two probe periods counts as a dead link.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use redis::{PushKind, Value};

use super::sharded::{self, Incoming};
use super::{Bridge, Counted, Link, PING_EVERY, READ_TIMEOUT, deliver, requests};
use crate::sio::Registry;

/// `url` asking for RESP3, where sharded messages are pushes.
fn resp3(url: &str) -> String {
    let joiner = if url.contains('?') { '&' } else { '?' };
    format!("{url}{joiner}protocol=resp3")
}

fn send(con: &mut redis::Connection, command: &str, channel: &str) -> redis::RedisResult<()> {
    con.send_packed_command(&redis::cmd(command).arg(channel).get_packed_command())
}

pub(super) fn subscribe_loop(bridge: &Arc<Bridge>, url: &str, registry: &Registry) {
    let mut link = Link::new(url, "subscribe");
    let client = match redis::Client::open(resp3(url)) {
        Ok(client) => client,
        Err(e) => {
            tracing::error!(url, error = %e, "the Redis URL does not take RESP3: no subscriber");
            return;
        }
    };
    let key = &bridge.wire.key;
    let own = super::eio::channel(key, &bridge.tag);
    loop {
        let mut con = link.connect(&client);
        let mut counted = Counted::new(bridge, registry);
        let mut held: HashSet<String> = counted.channels().into_iter().collect();
        held.insert(own.clone());
        for (ns, room) in bridge.census.all() {
            held.insert(sharded::room_channel(key, &ns, &room));
        }
        let subscribed = con.set_read_timeout(Some(READ_TIMEOUT)).and_then(|()| {
            held.iter()
                .try_for_each(|c| send(&mut con, "SSUBSCRIBE", c))
        });
        if let Err(e) = subscribed {
            link.down(&e);
            continue;
        }
        counted.subscribed();
        link.up();
        bridge.subscribed.store(true, Ordering::Relaxed);
        let mut last_heard = Instant::now();
        let mut probed = false;
        let error = loop {
            bridge.housekeeping();
            let followed = counted.follow(|channels, join| {
                let command = if join { "SSUBSCRIBE" } else { "SUNSUBSCRIBE" };
                channels.iter().try_for_each(|c| send(&mut con, command, c))
            });
            if let Err(e) = followed.and_then(|()| follow_rooms(bridge, &mut con, &mut held)) {
                break e;
            }
            match con.recv_response() {
                Ok(Value::Push { kind, data }) => {
                    (last_heard, probed) = (Instant::now(), false);
                    if kind == PushKind::SMessage
                        && let [Value::BulkString(channel), Value::BulkString(payload)] = &data[..]
                    {
                        if *channel == own.as_bytes() {
                            super::forward::on_message(bridge, registry, payload);
                        } else {
                            on_message(bridge, registry, payload);
                        }
                    }
                }
                Ok(_) => (last_heard, probed) = (Instant::now(), false),
                Err(e) if e.is_timeout() => {
                    let quiet = last_heard.elapsed();
                    if quiet >= PING_EVERY * 2 {
                        break e;
                    }
                    if quiet >= PING_EVERY && !probed {
                        probed = true;
                        if let Err(e) = send(&mut con, "SSUBSCRIBE", &own) {
                            break e;
                        }
                    }
                }
                Err(e) => break e,
            }
        };
        bridge.subscribed.store(false, Ordering::Relaxed);
        bridge.counters.reconnects.fetch_add(1, Ordering::Relaxed);
        bridge.pending.fail_all("the Redis link went down");
        link.down(&error);
    }
}

/// Subscribes to the rooms that gained a member here and leaves those that lost
/// their last one.
fn follow_rooms(
    bridge: &Bridge,
    con: &mut redis::Connection,
    held: &mut HashSet<String>,
) -> redis::RedisResult<()> {
    for (ns, room, present) in bridge.census.changes() {
        let channel = sharded::room_channel(&bridge.wire.key, &ns, &room);
        match (present, held.contains(&channel)) {
            (true, false) => {
                send(con, "SSUBSCRIBE", &channel)?;
                held.insert(channel);
            }
            (false, true) => {
                send(con, "SUNSUBSCRIBE", &channel)?;
                held.remove(&channel);
            }
            _ => {}
        }
    }
    Ok(())
}

fn on_message(bridge: &Arc<Bridge>, registry: &Registry, payload: &[u8]) {
    match sharded::decode(payload) {
        Some(Incoming::Broadcast(message)) => deliver(bridge, registry, &message),
        // Every namespace channel held here is counted (SHARDNUMSUB counts it).
        Some(Incoming::Request(request)) => requests::serve(bridge, registry, request, true),
        Some(Incoming::Response(response)) => bridge.pending.on_response(response),
        None => {
            bridge
                .counters
                .dropped_undecodable
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}
