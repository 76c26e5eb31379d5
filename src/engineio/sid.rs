//! Engine.IO session ids: 20 characters of `[A-Za-z0-9_-]` (URL-safe base64 of 15
//! bytes, like Node's `base64id`), whose first character names the worker (core) that
//! owns the session, so any core can route a polling request by its `sid` alone, with
//! no shared table. The other 19 characters carry 114 random bits, supplied by the
//! caller (this layer does no I/O).
//!
//! On a Redis bus the next six characters name the owning process instead (its
//! `ProcessTag`, 36 bits, checked free on the bus at start), so any host can route a
//! polling request to the owner; 78 random bits remain.
//!
//! Invariants: a `Sid` is always 20 characters of the alphabet; `worker()` < 64.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Characters in a sid.
pub const SID_LEN: usize = 20;
/// Random bytes a sid is made from (the first character is then replaced).
pub const SID_RANDOM_BYTES: usize = 15;
/// Workers a sid can name.
pub const MAX_WORKERS: usize = 64;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Characters of a sid that name its process on a bus.
pub const TAG_LEN: usize = 6;

/// A process's name within sids (six alphabet characters).
pub type ProcessTag = [u8; TAG_LEN];

/// Whether `tag` is six characters of the sid alphabet.
pub fn is_tag(tag: &[u8]) -> bool {
    tag.len() == TAG_LEN && tag.iter().all(|c| ALPHABET.contains(c))
}

/// A tag from random bytes.
pub fn tag_from(random: [u8; TAG_LEN]) -> ProcessTag {
    random.map(|b| ALPHABET[usize::from(b) % ALPHABET.len()])
}

/// A session id.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sid([u8; SID_LEN]);

impl Sid {
    /// A sid owned by `worker` (< 64), from 15 random bytes.
    pub fn new(worker: usize, random: [u8; SID_RANDOM_BYTES]) -> Sid {
        let mut text = [0u8; SID_LEN];
        // 15 bytes are exactly 20 base64 characters: the slice is large enough.
        let _ = URL_SAFE_NO_PAD.encode_slice(random, &mut text);
        text[0] = ALPHABET[worker % MAX_WORKERS];
        Sid(text)
    }

    /// A sid owned by `worker` of the process tagged `tag`.
    pub fn tagged(worker: usize, tag: &ProcessTag, random: [u8; SID_RANDOM_BYTES]) -> Sid {
        let mut sid = Sid::new(worker, random);
        sid.0[1..1 + TAG_LEN].copy_from_slice(tag);
        sid
    }

    /// The process tag this sid would carry (meaningful for sids made on a bus).
    pub fn tag(&self) -> ProcessTag {
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&self.0[1..1 + TAG_LEN]);
        tag
    }

    /// Checks a sid from a request: length and alphabet.
    pub fn parse(text: &str) -> Option<Sid> {
        let bytes: [u8; SID_LEN] = text.as_bytes().try_into().ok()?;
        bytes
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            .then_some(Sid(bytes))
    }

    /// The worker that owns the session.
    pub fn worker(&self) -> usize {
        ALPHABET.iter().position(|&c| c == self.0[0]).unwrap_or(0)
    }

    pub fn as_str(&self) -> &str {
        // Only alphabet characters are ever stored (see `new` and `parse`).
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Display for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Sid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sid({})", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_name_their_worker_and_round_trip() {
        for worker in [0, 1, 7, 63] {
            let sid = Sid::new(worker, [0xa5; SID_RANDOM_BYTES]);
            assert_eq!(sid.as_str().len(), SID_LEN);
            assert_eq!(sid.worker(), worker);
            assert_eq!(Sid::parse(sid.as_str()), Some(sid));
        }
    }

    #[test]
    fn tagged_sids_name_their_process_and_worker() {
        let tag = tag_from([0, 1, 2, 200, 255, 63]);
        assert!(is_tag(&tag));
        let sid = Sid::tagged(5, &tag, [0x5a; SID_RANDOM_BYTES]);
        assert_eq!((sid.worker(), sid.tag()), (5, tag));
        assert_eq!(Sid::parse(sid.as_str()), Some(sid));
        assert!(!is_tag(b"abc"));
        assert!(!is_tag(b"abc=ef"));
    }

    #[test]
    fn different_random_bytes_give_different_sids() {
        let a = Sid::new(1, [1; SID_RANDOM_BYTES]);
        let mut bytes = [1; SID_RANDOM_BYTES];
        bytes[14] = 2;
        assert_ne!(a, Sid::new(1, bytes));
    }

    #[test]
    fn malformed_sids_are_refused() {
        assert_eq!(Sid::parse(""), None);
        assert_eq!(Sid::parse("AAAAAAAAAAAAAAAAAAA"), None);
        assert_eq!(Sid::parse("AAAAAAAAAAAAAAAAAAAAA"), None);
        assert_eq!(Sid::parse("AAAAAAAAAAAAAAAAAAA="), None);
        assert_eq!(Sid::parse("AAAAAAAAAAAAAAAAAA€"), None);
        assert!(Sid::parse("AAAAAAAAAAAAAAAAAA_-").is_some());
    }
}
