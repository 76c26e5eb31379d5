//! Which public rooms have a member in this process, kept from the workers' room
//! watch (`fabric::RoomWatch`): the subscriber drops a room-channel broadcast nobody
//! here would get, and in sharded mode subscribes to a room's channel while the room
//! has members here (the adapter's `dynamic` mode).
//!
//! Rooms that look like socket ids (20 characters) are not counted: they never have a
//! channel of their own in sharded mode, and a broadcast to them is always delivered.
//! Namespace-wide rooms are counted apart: a namespace with a socket here (a dynamic
//! one in particular) gets the bus subscriptions that make this process counted there. Invariants: a room is counted once per worker that has
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
    /// Namespace → workers that have a socket in it.
    namespaces: HashMap<String, usize>,
    /// Namespaces whose presence changed since the subscriber last looked.
    namespaces_changed: HashSet<String>,
}

/// Counts `key` in or out of `counts`; records it in `changed` when it appears or goes.
fn count(
    counts: &mut HashMap<String, usize>,
    changed: &mut HashSet<String>,
    key: &str,
    here: bool,
) {
    let entry = counts.entry(key.to_string()).or_default();
    let before = *entry;
    *entry = if here {
        before + 1
    } else {
        before.saturating_sub(1)
    };
    let after = *entry;
    if after == 0 {
        counts.remove(key);
    }
    if (before == 0) != (after == 0) {
        changed.insert(key.to_string());
    }
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
        let namespace = match key.split_once('\0') {
            Some((namespace, "")) => Some(namespace),
            _ if public(key).is_some() => None,
            _ => return,
        };
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let inner = &mut *inner;
        match namespace {
            Some(ns) => count(
                &mut inner.namespaces,
                &mut inner.namespaces_changed,
                ns,
                here,
            ),
            None => count(&mut inner.rooms, &mut inner.changed, key, here),
        }
    }

    /// Namespaces whose presence may have changed since the last call:
    /// `(namespace, has sockets now)`.
    pub fn namespace_changes(&self) -> Vec<(String, bool)> {
        let Ok(mut inner) = self.inner.lock() else {
            return Vec::new();
        };
        let changed = std::mem::take(&mut inner.namespaces_changed);
        changed
            .into_iter()
            .map(|ns| {
                let present = inner.namespaces.contains_key(&ns);
                (ns, present)
            })
            .collect()
    }

    /// Every namespace with a socket here.
    pub fn namespaces(&self) -> Vec<String> {
        self.inner
            .lock()
            .map(|inner| inner.namespaces.keys().cloned().collect())
            .unwrap_or_default()
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

    #[test]
    fn namespaces_are_counted_apart_from_rooms() {
        let census = Arc::new(Census::default());
        let watch = census.watch();
        watch("/room-7\0", true);
        watch("/room-7\0", true);
        assert_eq!(census.namespaces(), ["/room-7"]);
        assert_eq!(census.namespace_changes(), [("/room-7".into(), true)]);
        assert!(census.changes().is_empty(), "a namespace is no room");
        watch("/room-7\0", false);
        assert!(
            census.namespace_changes().is_empty(),
            "another worker still has it"
        );
        watch("/room-7\0", false);
        assert_eq!(census.namespace_changes(), [("/room-7".into(), false)]);
        assert!(census.namespaces().is_empty());
    }
}
