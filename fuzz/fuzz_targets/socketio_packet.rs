//! `socketio::packet::parse_with_limit` on arbitrary bytes, and `socketio::binary::Reassembly`
//! for the binary headers it accepts.
//!
//! Checks, besides "no panic": a parsed packet keeps the parser's invariants (namespace
//! starts with `/` and holds no `,`; attachments within the bound and only on binary types;
//! an event exactly for event types; the payload is the input's tail); re-encoding it
//! parses back to the same packet; an event's `args` are a valid argument list on their
//! own (`2[0,<args>]` parses to the same args, and `3[<args>]` is a valid ACK); a binary
//! header waits for exactly its announced attachments.
//!
//! The first byte picks `max_attachments` (byte % 16); the rest is the packet text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use throng::socketio::binary::{AttachmentLimits, Reassembly, ReassemblyError};
use throng::socketio::packet::{EventName, PacketType, parse, parse_with_limit};

fuzz_target!(|data: &[u8]| {
    let Some((&first, text)) = data.split_first() else {
        return;
    };
    let max_attachments = usize::from(first % 16);
    let Ok(packet) = parse_with_limit(text, max_attachments) else {
        return;
    };

    assert!(packet.namespace.starts_with('/') && !packet.namespace.contains(','));
    assert!(packet.attachments <= max_attachments);
    if !packet.kind.is_binary() {
        assert_eq!((packet.attachments, packet.placeholders), (0, 0));
    }
    assert_eq!(packet.event.is_some(), packet.kind.is_event());
    if let Some(payload) = packet.payload {
        assert!(text.ends_with(payload));
    }

    let mut encoded = Vec::new();
    packet.encode(&mut encoded);
    assert_eq!(
        parse_with_limit(&encoded, max_attachments).as_ref(),
        Ok(&packet)
    );

    if let Some(event) = &packet.event {
        if let EventName::Str(name) = &event.name {
            assert!(!throng::socketio::packet::RESERVED_EVENTS.contains(&name.as_ref()));
        }
        let mut probe = b"2[0".to_vec();
        if !event.args.is_empty() {
            probe.push(b',');
            probe.extend_from_slice(event.args);
        }
        probe.push(b']');
        let again = parse(&probe).expect("the args form a list");
        assert_eq!(again.event.map(|e| e.args), Some(event.args));

        let mut ack = vec![PacketType::Ack.digit()];
        event.write_args_array(&mut ack);
        assert!(parse(&ack).is_ok(), "{:?}", String::from_utf8_lossy(&ack));
    }

    if packet.kind.is_binary() {
        let limits = AttachmentLimits {
            max_attachments,
            max_total_bytes: max_attachments,
        };
        let mut reassembly = Reassembly::new();
        let mut done = reassembly
            .begin(text.to_vec().into(), packet.attachments, limits)
            .expect("a parsed header is within the limits");
        for _ in 0..packet.attachments {
            assert!(done.is_none());
            assert_eq!(
                reassembly.check_text(),
                Err(ReassemblyError::TextWhileAwaiting)
            );
            done = reassembly
                .feed_binary(vec![0u8].into())
                .expect("one byte per attachment is within the limit");
        }
        let done = done.expect("complete after the last attachment");
        assert_eq!(done.header.as_ref(), text);
        assert_eq!(done.attachments.len(), packet.attachments);
        assert_eq!(
            reassembly.feed_binary(vec![0u8].into()),
            Err(ReassemblyError::UnexpectedBinary)
        );
    }
});
