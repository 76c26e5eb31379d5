//! Which public rooms have a member in this process, kept from the workers' room
//! watch (`fabric::RoomWatch`): the subscriber drops a room-channel broadcast nobody
//! here would get, and in sharded mode subscribes to a room's channel while the room
//! has members here (the adapter's `dynamic` mode).
//!
//! Rooms that look like socket ids (20 characters) and namespace-wide rooms are not
//! counted: they never have a channel of their own in sharded mode, and a broadcast to
//! them is always delivered. Invariants: a room is counted once per worker that has
//! it; an entry goes with the last worker's member; the lock is taken only for public
//! rooms, never for the id room every socket joins.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::fabric::RoomWatch;

use super::sharded::looks_like_a_socket_id;

#[derive(Default)]
pub(super) struct Census {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Fabric room key (`<namespace>\0<room>`) → workers that have a member.
    rooms: HashMap<String, usize>,
    /// Keys whose presence changed since the subscriber last looked.
    changed: HashSet<String>,
}

/// A room's namespace and name from its fabric key, if it is a public room.
fn public(key: &str) -> Option<(&str, &str)> {
    let (namespace, room) = key.split_once('\0')?;
    (!room.is_empty() && !looks_like_a_socket_id(room)).then_some((namespace, room))
}

impl Census {
    /// The watch the workers report to.
    pub fn watch(self: &Arc<Self>) -> RoomWatch {
        let census = Arc::clone(self);
        Arc::new(move |key: &str, here: bool| census.seen(key, here))
    }

    fn seen(&self, key: &str, here: bool) {
        if public(key).is_none() {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let count = inner.rooms.entry(key.to_string()).or_default();
        let before = *count;
        *count = if here {
            before + 1
        } else {
            before.saturating_sub(1)
        };
        let after = *count;
        if after == 0 {
            inner.rooms.remove(key);
        }
        if (before == 0) != (after == 0) {
            inner.changed.insert(key.to_string());
        }
    }

    /// Whether `room` of `namespace` has a member here; rooms that are not counted
    /// (socket ids) always do, as far as the caller should care.
    pub fn has(&self, namespace: &str, room: &str) -> bool {
        if room.is_empty() || looks_like_a_socket_id(room) {
            return true;
        }
        let key = format!("{namespace}\0{room}");
        self.inner
            .lock()
            .map_or(true, |inner| inner.rooms.contains_key(&key))
    }

    /// The public rooms whose presence may have changed since the last call:
    /// `(namespace, room, has members now)`.
    pub fn changes(&self) -> Vec<(String, String, bool)> {
        let Ok(mut inner) = self.inner.lock() else {
            return Vec::new();
        };
        let changed = std::mem::take(&mut inner.changed);
        changed
            .into_iter()
            .filter_map(|key| {
                let present = inner.rooms.contains_key(&key);
                let (namespace, room) = public(&key)?;
                Some((namespace.to_string(), room.to_string(), present))
            })
            .collect()
    }

    /// Every public room with a member here (to subscribe again after a reconnect).
    pub fn all(&self) -> Vec<(String, String)> {
        let Ok(inner) = self.inner.lock() else {
            return Vec::new();
        };
        inner
            .rooms
            .keys()
            .filter_map(|k| public(k).map(|(n, r)| (n.to_string(), r.to_string())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rooms_are_counted_per_worker_and_ids_not_at_all() {
        let census = Arc::new(Census::default());
        let watch = census.watch();
        watch("/\0lobby", true); // worker 0
        watch("/\0lobby", true); // worker 1
        watch("/\0A1d7bXvsPw0C5d1qZaQE", true);
        watch("/\0", true);
        assert!(census.has("/", "lobby"));
        assert!(!census.has("/", "other"));
        assert!(!census.has("/chat", "lobby"));
        assert!(
            census.has("/", "A1d7bXvsPw0C5d1qZaQE"),
            "ids are never dropped"
        );
        assert_eq!(census.changes(), [("/".into(), "lobby".into(), true)]);
        watch("/\0lobby", false);
        assert!(census.has("/", "lobby"), "worker 1 still has it");
        watch("/\0lobby", false);
        assert!(!census.has("/", "lobby"));
        assert_eq!(census.changes(), [("/".into(), "lobby".into(), false)]);
        assert!(census.all().is_empty());
        assert!(census.changes().is_empty());
    }
}
