//! `Request::parse` + `handshake::accept` on arbitrary bytes.
//!
//! Checks, besides "no panic": a complete head is no longer than the input or `max_head`;
//! the head alone parses to the same request, and a head cut short is never complete; a
//! refusal maps to a 4xx status; an accepted upgrade is a well-formed 101 response.
//!
//! The first byte picks `max_head` (256 B << (byte % 8), i.e. 256 B .. 32 KiB); the rest is
//! the request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use throng::http::request::Request;
use throng::ws::handshake;

fuzz_target!(|data: &[u8]| {
    let Some((&first, buf)) = data.split_first() else {
        return;
    };
    let max_head = 256usize << (first % 8);

    let req = match Request::parse(buf, max_head) {
        Ok(Some(req)) => req,
        Ok(None) => {
            assert!(
                buf.len() < max_head,
                "incomplete input at max_head must be refused"
            );
            return;
        }
        Err(reject) => {
            assert!((400..500).contains(&reject.status()), "{reject:?}");
            return;
        }
    };
    assert!(req.head_len <= buf.len() && req.head_len <= max_head);

    let head = &buf[..req.head_len];
    let again = Request::parse(head, max_head)
        .expect("the head alone parses")
        .expect("the head alone is complete");
    assert_eq!(again.head_len, req.head_len);
    assert_eq!((again.method, again.target), (req.method, req.target));
    assert_eq!(again.sec_websocket_key, req.sec_websocket_key);
    if req.head_len > 0 {
        assert!(
            !matches!(
                Request::parse(&head[..req.head_len - 1], max_head),
                Ok(Some(_))
            ),
            "a head cut short parsed as complete"
        );
    }

    match handshake::accept(&req) {
        Ok(accepted) => {
            let response = accepted.as_bytes();
            assert!(response.starts_with(b"HTTP/1.1 101 "));
            assert!(response.ends_with(b"\r\n\r\n"));
            assert!(
                response
                    .windows(22)
                    .any(|w| w.eq_ignore_ascii_case(b"sec-websocket-accept: ")),
                "101 without Sec-WebSocket-Accept"
            );
            assert_eq!(req.method, "GET");
        }
        Err(reject) => {
            assert!((400..500).contains(&reject.status()), "{reject:?}");
        }
    }
});
