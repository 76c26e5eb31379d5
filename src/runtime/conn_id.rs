//! `ConnId`: a connection's slab slot plus a generation, so that an event for a slot that
//! was freed and reused is recognised as stale and dropped.

/// Names one connection of one worker. Packs into the 64-bit token given to the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub slot: u32,
    pub generation: u32,
}

impl ConnId {
    pub fn to_token(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.slot)
    }

    pub fn from_token(token: u64) -> ConnId {
        ConnId {
            slot: token as u32,
            generation: (token >> 32) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_round_trip() {
        for id in [
            ConnId {
                slot: 0,
                generation: 0,
            },
            ConnId {
                slot: 7,
                generation: 9,
            },
            ConnId {
                slot: u32::MAX - 2,
                generation: u32::MAX,
            },
        ] {
            assert_eq!(ConnId::from_token(id.to_token()), id);
        }
    }
}
