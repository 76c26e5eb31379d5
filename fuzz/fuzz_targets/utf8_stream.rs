//! `Utf8Stream` fed in fuzzer-chosen pieces must agree with `std::str::from_utf8`.
//!
//! - The whole verdict (every `feed` and `finish` succeed) equals `from_utf8(whole).is_ok()`.
//! - A `feed` fails exactly when the bytes seen so far can no longer begin valid UTF-8, i.e.
//!   std reports a definite error (`error_len() == Some(_)`) on that prefix; while `feed`
//!   succeeds, the prefix is valid or ends in an incomplete character.
//! - `finish` resets the stream, so it can be reused: when the knob (high half of byte 0)
//!   is odd, the pieces go to a stream that has already checked and finished the whole
//!   input once, and the answers must not change.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use throng::ws::utf8::Utf8Stream;

/// Whether `prefix` cannot be the start of any valid UTF-8 text.
fn definitely_invalid(prefix: &[u8]) -> bool {
    matches!(std::str::from_utf8(prefix), Err(e) if e.error_len().is_some())
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = common::chunked(data) else {
        return;
    };
    let whole = input.stream;

    let mut stream = Utf8Stream::default();
    if input.knob & 1 == 1 {
        let _ = stream.feed(whole);
        let _ = stream.finish();
    }
    let mut seen = 0;
    let mut failed = false;
    for &n in &input.lengths {
        let piece = &whole[seen..seen + n];
        seen += n;
        let ok = stream.feed(piece).is_ok();
        assert_eq!(
            !ok,
            definitely_invalid(&whole[..seen]),
            "feed disagrees with std on the first {seen} bytes"
        );
        if !ok {
            failed = true;
            break;
        }
    }
    let valid = !failed && stream.finish().is_ok();
    assert_eq!(
        valid,
        std::str::from_utf8(whole).is_ok(),
        "verdict differs from std"
    );
});
