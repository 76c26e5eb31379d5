//! `engineio::packet::decode_payload` (a polling body) and `engineio::request::parse_query`
//! on arbitrary bytes.
//!
//! Checks, besides "no panic": a payload gives at most `max_packets` packets; a decoded
//! payload re-encoded with `PayloadWriter` decodes to the same packets (text packets keep
//! their bytes, binary ones their decoded bytes); the records of a valid payload each
//! decode alone the same way. The query parser accepts exactly the targets with a
//! `transport` of `polling` or `websocket`.
//!
//! The first byte picks `max_packets` (1 + byte % 32); the rest is the body (and, as
//! UTF-8 when it is, a request target).
#![no_main]

use libfuzzer_sys::fuzz_target;
use throng::engineio::packet::{Data, PayloadWriter, SEPARATOR, decode_payload, decode_record};
use throng::engineio::request::{ErrorCode, parse_query};

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let max_packets = 1 + usize::from(first % 32);

    if let Ok(packets) = decode_payload(body, max_packets) {
        assert!(packets.len() <= max_packets);
        let mut writer = PayloadWriter::default();
        for (packet, record) in packets.iter().zip(body.split(|&b| b == SEPARATOR)) {
            assert_eq!(decode_record(record).as_ref(), Ok(packet));
            match &packet.data {
                Data::Text(text) => writer.text(packet.kind, text),
                Data::Binary(bytes) => writer.binary(bytes),
            }
        }
        let again = writer.finish();
        assert_eq!(decode_payload(&again, max_packets).as_deref(), Ok(&packets[..]));
    }

    if let Ok(target) = std::str::from_utf8(body) {
        let has_transport = target
            .split_once('?')
            .map_or("", |(_, q)| q)
            .split('&')
            .map(|pair| pair.split_once('=').unwrap_or((pair, "")))
            .filter(|(key, _)| *key == "transport")
            .map(|(_, value)| value)
            .last()
            .is_some_and(|t| t == "polling" || t == "websocket");
        match parse_query(target) {
            Ok(_) => assert!(has_transport, "{target:?}"),
            Err(code) => {
                assert_eq!(code, ErrorCode::TransportUnknown);
                assert!(!has_transport, "{target:?}");
            }
        }
    }
});
