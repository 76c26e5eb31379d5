//! Which of the adapter's two formats the bus speaks, and what that decides: the
//! channel and bytes of each broadcast, request and answer, the publish command and
//! how servers are counted. One `Wire` per bridge; the rest of the bridge asks it.

use super::{classic, sharded};
use crate::sio::Relayed;
use classic::{Request, Response};

/// `--redis-mode` (defined with the rest of the configuration).
pub use crate::config::RedisMode as Mode;

/// A mode, with the channel prefix and this node's uid.
pub(super) struct Wire {
    pub mode: Mode,
    pub key: String,
    pub uid: String,
}

/// A publish: its channel and bytes.
pub(super) type Publish = (String, Vec<u8>);

impl Wire {
    /// `PUBLISH` or `SPUBLISH`.
    pub fn publish_command(&self) -> &'static str {
        match self.mode {
            Mode::Classic => "PUBLISH",
            Mode::Sharded => "SPUBLISH",
        }
    }

    /// The `PUBSUB` subcommand and channel that count the servers of `namespace`.
    pub fn count(&self, namespace: &str) -> (&'static str, String) {
        match self.mode {
            Mode::Classic => ("NUMSUB", classic::request_channel(&self.key, namespace)),
            Mode::Sharded => ("SHARDNUMSUB", sharded::channel(&self.key, namespace)),
        }
    }

    /// The channels a namespace's requests and answers come on here; the first is
    /// the one `PUBSUB` counts. (Classic answers come on the subscriber's response
    /// pattern, for every namespace.)
    pub fn namespace_channels(&self, namespace: &str) -> Vec<String> {
        match self.mode {
            Mode::Classic => vec![classic::request_channel(&self.key, namespace)],
            // Sharded answers come on the asker's own channel only.
            Mode::Sharded => vec![
                sharded::channel(&self.key, namespace),
                sharded::response_channel(&self.key, namespace, &self.uid),
            ],
        }
    }

    /// Broadcast `b`, made here (`ack`: its request id and timeout in ms, for a
    /// broadcast with an ack). `None` when an element is not JSON.
    pub fn broadcast(&self, b: &Relayed<'_>, ack: Option<(&str, u64)>) -> Option<Publish> {
        let (uid, key, namespace) = (&self.uid, &self.key, b.namespace);
        match (self.mode, ack) {
            (Mode::Classic, None) => Some((
                classic::channel(key, namespace, &b.rooms),
                classic::encode(uid, b)?,
            )),
            (Mode::Classic, Some((request_id, timeout_ms))) => Some((
                classic::request_channel(key, namespace),
                classic::encode_broadcast_ack(uid, request_id, b, timeout_ms)?,
            )),
            (Mode::Sharded, None) => Some((
                sharded::broadcast_channel(key, namespace, &b.rooms),
                sharded::encode_broadcast(uid, b, None)?,
            )),
            (Mode::Sharded, Some(_)) => Some((
                sharded::channel(key, namespace),
                sharded::encode_broadcast(uid, b, ack)?,
            )),
        }
    }

    /// A request from here for every other server of `namespace`. `None` when it has
    /// no form in this mode (`allRooms` in sharded mode).
    pub fn request(&self, namespace: &str, request: &Request) -> Option<Publish> {
        match self.mode {
            Mode::Classic => Some((
                classic::request_channel(&self.key, namespace),
                classic::encode_request(&self.uid, request)?,
            )),
            Mode::Sharded => Some((
                sharded::channel(&self.key, namespace),
                sharded::encode_request(&self.uid, request)?,
            )),
        }
    }

    /// An answer to `requester`'s request: classic answers go on the namespace's
    /// response channel, sharded ones on the asker's own.
    pub fn response(
        &self,
        namespace: &str,
        requester: &str,
        response: &Response,
    ) -> Option<Publish> {
        match self.mode {
            Mode::Classic => Some((
                classic::response_channel(&self.key, namespace),
                classic::encode_response(response)?,
            )),
            Mode::Sharded => Some((
                sharded::response_channel(&self.key, namespace, requester),
                sharded::encode_response(&self.uid, namespace, response)?,
            )),
        }
    }
}
