//! One worker's room index: room → member slots, and slot → rooms. Each worker indexes
//! only its own connections, so the index needs no lock; a broadcast to a room reaches
//! the other workers through their inboxes and each looks up its own members.
//!
//! Invariants:
//! - `members[r]` contains `s` exactly when `joined[s]` contains `r`.
//! - A room with no members and a slot in no room have no entry (nothing grows with
//!   rooms that were left, or with connections that never joined one).
//! - A slot is in at most `max_per_conn` rooms.
//!
//! Member sets are `IndexSet`s: O(1) join and leave (swap-remove) and iteration over a
//! dense array, which is what a broadcast does.

use std::collections::HashMap;
use std::sync::Arc;

use indexmap::IndexSet;

/// A room's name, shared by the index entries that refer to it.
pub type RoomKey = Arc<str>;

/// Why a join was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooManyRooms {
    pub limit: usize,
}

impl std::fmt::Display for TooManyRooms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a connection may be in at most {} rooms", self.limit)
    }
}

/// Told when a room gets its first member on a worker (`true`) or loses its last
/// (`false`); called on that worker's thread, so it must not block.
pub type RoomWatch = Arc<dyn Fn(&str, bool) + Send + Sync>;

pub struct Rooms {
    members: HashMap<RoomKey, IndexSet<u32>>,
    joined: HashMap<u32, Vec<RoomKey>>,
    max_per_conn: usize,
    watch: Option<RoomWatch>,
}

impl Rooms {
    pub fn new(max_per_conn: usize) -> Rooms {
        Rooms {
            members: HashMap::new(),
            joined: HashMap::new(),
            max_per_conn,
            watch: None,
        }
    }

    /// Reports rooms appearing and emptying here to `watch` from now on.
    pub fn set_watch(&mut self, watch: RoomWatch) {
        self.watch = Some(watch);
    }

    /// Adds `slot` to `room`. `Ok(false)`: it was already there.
    pub fn join(&mut self, slot: u32, room: &str) -> Result<bool, TooManyRooms> {
        let mine = self.joined.entry(slot).or_default();
        if mine.iter().any(|r| &**r == room) {
            return Ok(false);
        }
        if mine.len() >= self.max_per_conn {
            if mine.is_empty() {
                self.joined.remove(&slot);
            }
            return Err(TooManyRooms {
                limit: self.max_per_conn,
            });
        }
        let key = match self.members.get_key_value(room) {
            Some((key, _)) => Arc::clone(key),
            None => RoomKey::from(room),
        };
        mine.push(Arc::clone(&key));
        let members = self.members.entry(key).or_default();
        members.insert(slot);
        if members.len() == 1
            && let Some(watch) = &self.watch
        {
            watch(room, true);
        }
        Ok(true)
    }

    /// Removes `slot` from `room`. `false`: it was not there.
    pub fn leave(&mut self, slot: u32, room: &str) -> bool {
        let Some(mine) = self.joined.get_mut(&slot) else {
            return false;
        };
        let Some(at) = mine.iter().position(|r| &**r == room) else {
            return false;
        };
        mine.swap_remove(at);
        if mine.is_empty() {
            self.joined.remove(&slot);
        }
        self.remove_member(room, slot);
        true
    }

    /// Removes `slot` from every room (on disconnect).
    pub fn leave_all(&mut self, slot: u32) {
        if let Some(mine) = self.joined.remove(&slot) {
            for room in mine {
                self.remove_member(&room, slot);
            }
        }
    }

    fn remove_member(&mut self, room: &str, slot: u32) {
        if let Some(set) = self.members.get_mut(room) {
            set.swap_remove(&slot);
            if set.is_empty() {
                self.members.remove(room);
                if let Some(watch) = &self.watch {
                    watch(room, false);
                }
            }
        }
    }

    /// The members of `room` on this worker.
    pub fn members(&self, room: &str) -> Option<&IndexSet<u32>> {
        self.members.get(room)
    }

    /// The rooms `slot` is in.
    pub fn rooms_of(&self, slot: u32) -> &[RoomKey] {
        self.joined.get(&slot).map_or(&[], |v| v.as_slice())
    }

    /// Rooms with at least one member here.
    pub fn room_count(&self) -> usize {
        self.members.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watch_sees_rooms_appear_and_empty_once_each() {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        let mut rooms = Rooms::new(8);
        rooms.set_watch(Arc::new(move |room: &str, here: bool| {
            log.lock().unwrap().push((room.to_string(), here));
        }));
        rooms.join(1, "a").unwrap();
        rooms.join(2, "a").unwrap();
        rooms.join(2, "b").unwrap();
        rooms.leave(1, "a");
        rooms.leave_all(2);
        let seen = seen.lock().unwrap().clone();
        let mut gone: Vec<_> = seen[2..].to_vec();
        gone.sort();
        assert_eq!(seen[..2], [("a".into(), true), ("b".into(), true)]);
        assert_eq!(gone, [("a".into(), false), ("b".into(), false)]);
    }

    fn sorted(rooms: &Rooms, room: &str) -> Vec<u32> {
        let mut v: Vec<u32> = rooms
            .members(room)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    #[test]
    fn join_leave_and_cleanup_keep_both_sides_in_step() {
        let mut rooms = Rooms::new(8);
        assert_eq!(rooms.join(1, "a"), Ok(true));
        assert_eq!(rooms.join(1, "a"), Ok(false));
        assert_eq!(rooms.join(2, "a"), Ok(true));
        assert_eq!(rooms.join(2, "b"), Ok(true));
        assert_eq!(sorted(&rooms, "a"), [1, 2]);
        assert_eq!(rooms.rooms_of(2).len(), 2);
        assert!(rooms.leave(1, "a"));
        assert!(!rooms.leave(1, "a"));
        assert_eq!(sorted(&rooms, "a"), [2]);
        assert!(rooms.rooms_of(1).is_empty());
        rooms.leave_all(2);
        assert!(rooms.members("a").is_none());
        assert!(rooms.members("b").is_none());
        assert_eq!(rooms.room_count(), 0);
        assert!(rooms.joined.is_empty());
    }

    #[test]
    fn rooms_per_connection_are_bounded() {
        let mut rooms = Rooms::new(2);
        rooms.join(7, "x").unwrap();
        rooms.join(7, "y").unwrap();
        assert_eq!(rooms.join(7, "z"), Err(TooManyRooms { limit: 2 }));
        assert!(rooms.members("z").is_none());
        // A connection at zero rooms with a zero limit leaves no entry behind.
        let mut none = Rooms::new(0);
        assert!(none.join(1, "x").is_err());
        assert!(none.joined.is_empty());
    }

    #[test]
    fn room_keys_are_shared_between_members() {
        let mut rooms = Rooms::new(4);
        rooms.join(1, "shared").unwrap();
        rooms.join(2, "shared").unwrap();
        let a = &rooms.rooms_of(1)[0];
        let b = &rooms.rooms_of(2)[0];
        assert!(Arc::ptr_eq(a, b));
    }
}
