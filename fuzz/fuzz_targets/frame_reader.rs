//! `Reader` (server role) on arbitrary bytes, cut at fuzzer-chosen points.
//!
//! Checks, besides "no panic, no unbounded growth":
//! - feeding the stream in pieces reports exactly the same events (messages, pings, pongs,
//!   close) as feeding it whole, and fails with the same violation. One difference is
//!   allowed: a control frame whose header was cut by a read boundary is spilled and checked
//!   only once its (at most 125 B) payload has arrived, so when the input ends inside that
//!   payload the whole feed has already failed while the split feed is still waiting;
//! - every message is at most `max_message` bytes and every text message is UTF-8;
//! - after an error or the peer's close, the reader ignores further input.
//!
//! The knob (high half of byte 0) picks `max_message` = 16 B << knob (16 B .. 512 KiB), so
//! the 1009 path is reached with small inputs.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use throng::ws::{CloseCode, Payload, ReadConfig, Reader, Role, Violation, Visitor};

#[derive(Debug, PartialEq)]
enum Event {
    Message { text: bool, payload: Vec<u8> },
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<CloseCode>, String),
}

#[derive(Default)]
struct Record(Vec<Event>);

impl Visitor for Record {
    fn message(&mut self, text: bool, payload: Payload<'_>) {
        self.0.push(Event::Message {
            text,
            payload: payload.as_slice().to_vec(),
        });
    }
    fn ping(&mut self, payload: &[u8]) {
        self.0.push(Event::Ping(payload.to_vec()));
    }
    fn pong(&mut self, payload: &[u8]) {
        self.0.push(Event::Pong(payload.to_vec()));
    }
    fn close(&mut self, code: Option<CloseCode>, reason: &str) {
        self.0.push(Event::Close(code, reason.to_owned()));
    }
}

/// Feeds `pieces` in order, stopping at the first error as a connection would.
fn run<'a>(
    pieces: impl Iterator<Item = &'a [u8]>,
    cfg: &ReadConfig,
) -> (Vec<Event>, Result<(), Violation>, Reader) {
    let mut reader = Reader::default();
    let mut record = Record::default();
    for piece in pieces {
        // The reader unmasks in place, so each piece is a private copy (as a read buffer is).
        let mut buf = piece.to_vec();
        if let Err(v) = reader.feed(&mut buf, cfg, &mut record) {
            assert!(reader.is_closed(), "a reader that failed must be closed");
            return (record.0, Err(v), reader);
        }
    }
    (record.0, Ok(()), reader)
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = common::chunked(data) else {
        return;
    };
    let cfg = ReadConfig {
        role: Role::Server,
        max_message: 16 << input.knob,
    };

    let (whole_events, whole_result, _) = run(std::iter::once(input.stream), &cfg);

    let mut at = 0;
    let pieces = input.lengths.iter().map(|&n| {
        let piece = &input.stream[at..at + n];
        at += n;
        piece
    });
    let (split_events, split_result, mut reader) = run(pieces, &cfg);

    assert_eq!(
        whole_events, split_events,
        "the events depend on read boundaries"
    );
    match (&whole_result, &split_result) {
        (Ok(()), Ok(())) => {}
        (Err(_), Ok(())) => assert!(
            reader.buffered_capacity() > 0,
            "whole feed failed with {whole_result:?}, split feed is fine and waits for nothing"
        ),
        _ => assert_eq!(
            whole_result, split_result,
            "the result depends on read boundaries"
        ),
    }

    for event in &split_events {
        if let Event::Message { text, payload } = event {
            assert!(payload.len() <= cfg.max_message, "message over max_message");
            if *text {
                assert!(
                    std::str::from_utf8(payload).is_ok(),
                    "text message is not UTF-8"
                );
            }
        }
    }

    // Once closed (peer close or violation) the reader ignores input and holds nothing.
    if reader.is_closed() {
        assert_eq!(
            reader.buffered_capacity(),
            0,
            "a closed reader still holds buffers"
        );
        let mut more = input.stream.to_vec();
        let mut record = Record::default();
        assert_eq!(reader.feed(&mut more, &cfg, &mut record), Ok(()));
        assert!(record.0.is_empty(), "a closed reader reported an event");
    }
});
