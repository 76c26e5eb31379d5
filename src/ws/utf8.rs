//! Streaming UTF-8 validation for text messages that arrive in pieces.
//!
//! Each piece is checked as soon as it arrives (simdutf8), so an invalid sequence fails the
//! connection at once rather than at the end of the message (Autobahn 6.4.*). A multi-byte
//! character cut by a piece boundary leaves at most three bytes of carry. Errors are
//! `Violation::InvalidUtf8`, which the connection answers with close 1007.

use super::close::Violation;

/// Validation state between pieces: the bytes of a character not yet complete.
#[derive(Clone, Copy, Debug, Default)]
pub struct Utf8Stream {
    carry: [u8; 4],
    carry_len: u8,
}

/// Length of the sequence introduced by `lead`, for a lead byte the validator accepted.
fn sequence_len(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

impl Utf8Stream {
    /// Checks the next piece. `Err(InvalidUtf8)` as soon as the bytes seen so far cannot be the
    /// start of valid UTF-8.
    pub fn feed(&mut self, mut piece: &[u8]) -> Result<(), Violation> {
        if self.carry_len > 0 {
            let need = sequence_len(self.carry[0]);
            let mut have = usize::from(self.carry_len);
            while have < need && !piece.is_empty() {
                self.carry[have] = piece[0];
                piece = &piece[1..];
                have += 1;
            }
            self.carry_len = have as u8;
            match std::str::from_utf8(&self.carry[..have]) {
                Ok(_) => self.carry_len = 0,
                // Still a valid prefix of a character: wait for more.
                Err(e) if e.error_len().is_none() => return Ok(()),
                Err(_) => return Err(Violation::InvalidUtf8),
            }
        }
        match simdutf8::compat::from_utf8(piece) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_none() => {
                let tail = &piece[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.carry_len = tail.len() as u8;
                Ok(())
            }
            Err(_) => Err(Violation::InvalidUtf8),
        }
    }

    /// Ends the message: valid only if no character was left incomplete.
    pub fn finish(&mut self) -> Result<(), Violation> {
        let complete = self.carry_len == 0;
        *self = Utf8Stream::default();
        if complete {
            Ok(())
        } else {
            Err(Violation::InvalidUtf8)
        }
    }
}

/// Whole-buffer validation for a message that arrived in one piece.
pub fn validate(bytes: &[u8]) -> Result<(), Violation> {
    simdutf8::basic::from_utf8(bytes)
        .map(|_| ())
        .map_err(|_| Violation::InvalidUtf8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_ok(pieces: &[&[u8]]) -> bool {
        let mut s = Utf8Stream::default();
        pieces.iter().all(|p| s.feed(p).is_ok()) && s.finish().is_ok()
    }

    #[test]
    fn every_split_of_valid_text_is_valid() {
        let text = "κόσμε a€b𝄞c\u{10FFFF}é".as_bytes();
        for i in 0..=text.len() {
            for j in i..=text.len() {
                assert!(stream_ok(&[&text[..i], &text[i..j], &text[j..]]), "{i} {j}");
            }
        }
    }

    #[test]
    fn invalid_sequences_fail_in_the_piece_that_holds_them() {
        // "κόσμε" then an invalid byte, then more valid text that never arrives.
        let mut s = Utf8Stream::default();
        assert!(s.feed("κόσμε".as_bytes()).is_ok());
        assert!(s.feed(&[0xED, 0xA0, 0x80]).is_err(), "surrogate");
        let mut s = Utf8Stream::default();
        assert!(s.feed(&[0xF4]).is_ok());
        assert!(
            s.feed(&[0x90]).is_err(),
            "above U+10FFFF fails on its second byte"
        );
        let mut s = Utf8Stream::default();
        assert!(s.feed(&[0xE0]).is_ok());
        assert!(
            s.feed(&[0x80]).is_err(),
            "overlong fails on its second byte"
        );
        let mut s = Utf8Stream::default();
        assert!(s.feed(&[0xFF]).is_err());
    }

    #[test]
    fn truncated_character_fails_at_finish() {
        let mut s = Utf8Stream::default();
        assert!(s.feed(&[b'a', 0xE2, 0x82]).is_ok());
        assert!(s.finish().is_err());
        // finish() resets, so the stream is reusable.
        assert!(s.feed(b"ok").is_ok());
        assert!(s.finish().is_ok());
    }

    #[test]
    fn matches_std_on_byte_by_byte_input() {
        let cases: [&[u8]; 6] = [
            b"plain",
            "€𝄞".as_bytes(),
            &[0xC0, 0xAF],
            &[0xF0, 0x9F, 0x98],
            &[0xEF, 0xBF, 0xBF, 0x41],
            &[
                0xCE, 0xBA, 0xE1, 0xBD, 0xB9, 0xCF, 0x83, 0xCE, 0xBC, 0xCE, 0xB5, 0xF4, 0x90, 0x80,
            ],
        ];
        for case in cases {
            let pieces: Vec<&[u8]> = case.chunks(1).collect();
            assert_eq!(
                stream_ok(&pieces),
                std::str::from_utf8(case).is_ok(),
                "{case:?}"
            );
        }
    }
}
