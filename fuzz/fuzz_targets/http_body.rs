//! The HTTP body parsers a polling POST goes through: `http::request::decode_chunked`
//! (a chunked body after the head) and `engineio::jsonp::unwrap_form` (a JSONP POST).
//!
//! Checks, besides "no panic": a decoded chunked body is at most `limit` bytes, its
//! reported length is within the input, and the input cut anywhere before that length is
//! incomplete (never a different body); the body re-chunked in one chunk decodes to the
//! same bytes. A JSONP form without `d=` is refused; an unwrapped payload is never longer
//! than its form value.
//!
//! Byte 0 sets `limit` = 1 << (byte % 24); the rest is the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use throng::engineio::jsonp::unwrap_form;
use throng::http::request::decode_chunked;

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let limit = 1usize << (first % 24);

    if let Ok(Some((decoded, used))) = decode_chunked(body, limit) {
        assert!(decoded.len() <= limit);
        assert!(used <= body.len());
        for cut in [0, used / 2, used.saturating_sub(1)] {
            if cut < used {
                assert!(matches!(decode_chunked(&body[..cut], limit), Ok(None) | Err(_)));
            }
        }
        let mut again = format!("{:x}\r\n", decoded.len()).into_bytes();
        again.extend_from_slice(&decoded);
        again.extend_from_slice(b"\r\n0\r\n\r\n");
        if !decoded.is_empty() {
            assert_eq!(decode_chunked(&again, limit), Ok(Some((decoded, again.len()))));
        }
    }

    let value = body
        .split(|&b| b == b'&')
        .find_map(|pair| pair.strip_prefix(b"d="));
    match (unwrap_form(body), value) {
        (Some(payload), Some(value)) => assert!(payload.len() <= value.len()),
        (Some(_), None) => panic!("unwrapped a form without d="),
        (None, _) => {}
    }
});
