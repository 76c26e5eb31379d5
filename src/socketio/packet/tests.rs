//! Tests of `packet.rs`: every example of PROTOCOLS.md §2, every rule's violation, escaped
//! and numeric event names, placeholders at any depth, encoding and round trips.

use super::*;
use PacketType::{Ack, BinaryAck, BinaryEvent, Connect, ConnectError, Disconnect};

fn packet<'a>(
    kind: PacketType,
    namespace: &'a str,
    ack_id: Option<u64>,
    payload: Option<&'a str>,
) -> Packet<'a> {
    Packet {
        kind,
        attachments: 0,
        namespace,
        ack_id,
        payload: payload.map(str::as_bytes),
        event: None,
        placeholders: 0,
    }
}

fn named<'a>(name: &'a str, args: &'a str) -> Option<Event<'a>> {
    Some(Event {
        name: EventName::Str(Cow::Borrowed(name)),
        args: args.as_bytes(),
    })
}

fn numbered<'a>(number: &'a str, args: &'a str) -> Option<Event<'a>> {
    Some(Event {
        name: EventName::Number(number),
        args: args.as_bytes(),
    })
}

fn binary(packet: Packet<'_>, attachments: usize, placeholders: usize) -> Packet<'_> {
    Packet {
        attachments,
        placeholders,
        ..packet
    }
}

/// Every example of PROTOCOLS.md §2, then the other accepted forms.
fn valid() -> Vec<(&'static str, Packet<'static>)> {
    const BAZ: &str = r#"["baz",{"_placeholder":true,"num":0}]"#;
    const BAR: &str = r#"["bar",{"_placeholder":true,"num":0}]"#;
    const NESTED: &str =
        r#"["e",{"a":[{"_placeholder":true,"num":1}]},{"_placeholder":true,"num":0}]"#;
    const NESTED_ARGS: &str =
        r#"{"a":[{"_placeholder":true,"num":1}]},{"_placeholder":true,"num":0}"#;
    const SPACED: &str = " [ \"foo\" ,\t1 ,\n{\"a\":[2]} ] ";
    vec![
        ("0", packet(Connect, "/", None, None)),
        (
            r#"0/admin,{"token":"1"}"#,
            packet(Connect, "/admin", None, Some(r#"{"token":"1"}"#)),
        ),
        (
            r#"2["foo"]"#,
            Packet {
                event: named("foo", ""),
                ..packet(PacketType::Event, "/", None, Some(r#"["foo"]"#))
            },
        ),
        (
            r#"2/admin,12["x"]"#,
            Packet {
                event: named("x", ""),
                ..packet(PacketType::Event, "/admin", Some(12), Some(r#"["x"]"#))
            },
        ),
        (
            r#"3/admin,13["bar"]"#,
            packet(Ack, "/admin", Some(13), Some(r#"["bar"]"#)),
        ),
        ("1/admin,", packet(Disconnect, "/admin", None, None)),
        (
            r#"4{"message":"Not authorized"}"#,
            packet(
                ConnectError,
                "/",
                None,
                Some(r#"{"message":"Not authorized"}"#),
            ),
        ),
        (
            r#"51-["baz",{"_placeholder":true,"num":0}]"#,
            binary(
                Packet {
                    event: named("baz", r#"{"_placeholder":true,"num":0}"#),
                    ..packet(BinaryEvent, "/", None, Some(BAZ))
                },
                1,
                1,
            ),
        ),
        (
            r#"61-15["bar",{"_placeholder":true,"num":0}]"#,
            binary(packet(BinaryAck, "/", Some(15), Some(BAR)), 1, 1),
        ),
        // Beyond the examples.
        ("0/admin", packet(Connect, "/admin", None, None)),
        ("0/,", packet(Connect, "/", None, None)),
        ("1", packet(Disconnect, "/", None, None)),
        (
            r#"4"oops""#,
            packet(ConnectError, "/", None, Some(r#""oops""#)),
        ),
        ("3[]", packet(Ack, "/", None, Some("[]"))),
        ("37[]", packet(Ack, "/", Some(7), Some("[]"))),
        (
            r#"21["x"]"#,
            Packet {
                event: named("x", ""),
                ..packet(PacketType::Event, "/", Some(1), Some(r#"["x"]"#))
            },
        ),
        (
            r#"2/,18446744073709551615["x"]"#,
            Packet {
                event: named("x", ""),
                ..packet(PacketType::Event, "/", Some(u64::MAX), Some(r#"["x"]"#))
            },
        ),
        (
            r#"2[1,"a"]"#,
            Packet {
                event: numbered("1", r#""a""#),
                ..packet(PacketType::Event, "/", None, Some(r#"[1,"a"]"#))
            },
        ),
        (
            "2[-2.5e3]",
            Packet {
                event: numbered("-2.5e3", ""),
                ..packet(PacketType::Event, "/", None, Some("[-2.5e3]"))
            },
        ),
        (
            "2 [ \"foo\" ,\t1 ,\n{\"a\":[2]} ] ",
            Packet {
                event: named("foo", "1 ,\n{\"a\":[2]}"),
                ..packet(PacketType::Event, "/", None, Some(SPACED))
            },
        ),
        (
            // Not a binary packet: placeholders are plain objects, lone surrogates pass.
            r#"2["e",{"_placeholder":true,"num":5},"\ud800"]"#,
            Packet {
                event: named("e", r#"{"_placeholder":true,"num":5},"\ud800""#),
                ..packet(
                    PacketType::Event,
                    "/",
                    None,
                    Some(r#"["e",{"_placeholder":true,"num":5},"\ud800"]"#),
                )
            },
        ),
        (
            r#"50-["e"]"#,
            binary(
                Packet {
                    event: named("e", ""),
                    ..packet(BinaryEvent, "/", None, Some(r#"["e"]"#))
                },
                0,
                0,
            ),
        ),
        (
            r#"502-/chat,9["e",{"a":[{"_placeholder":true,"num":1}]},{"_placeholder":true,"num":0}]"#,
            binary(
                Packet {
                    event: named("e", NESTED_ARGS),
                    ..packet(BinaryEvent, "/chat", Some(9), Some(NESTED))
                },
                2,
                2,
            ),
        ),
        (
            r#"610-[]"#,
            binary(packet(BinaryAck, "/", None, Some("[]")), 10, 0),
        ),
    ]
}

#[test]
fn parses_valid_packets() {
    for (input, expected) in valid() {
        assert_eq!(parse(input.as_bytes()), Ok(expected), "{input}");
    }
}

#[test]
fn rejects_invalid_packets() {
    use PacketError::*;
    let cases: &[(&[u8], PacketError)] = &[
        (b"", Empty),
        (b"7", BadType(b'7')),
        (b"a[]", BadType(b'a')),
        (b"[\"x\"]", BadType(b'[')),
        // Attachment counts.
        (br#"5["x"]"#, BadAttachments),
        (br#"51["x"]"#, BadAttachments),
        (br#"5-["x"]"#, BadAttachments),
        (br#"6/admin,1-[]"#, BadAttachments),
        (br#"511-["x"]"#, TooManyAttachments),
        (br#"599999999999999999999999-["x"]"#, TooManyAttachments),
        // Ack ids: a non-digit makes the rest a JSON parse.
        (br#"2/admin,abc["x"]"#, BadJson),
        (br#"2/admin,18446744073709551616["x"]"#, BadAckId),
        (br#"21-["x"]"#, BadJson),
        // Namespace and JSON text.
        (b"0/\xff,", BadNamespace),
        (b"2[\"\xff\"]", BadJson),
        (br#"2["x""#, BadJson),
        (br#"2["x"]x"#, BadJson),
        (br#"2["x"],"#, BadJson),
        (br#"2['x']"#, BadJson),
        (b"2 ", BadJson),
        (b"0{\"a\x01\":1}", BadJson),
        // Found by fuzzing: a raw control character in a key of a binary packet.
        (b"52-[\"e\",{\"\\u005fplaceholder,\0\0num\":0.0}]", BadJson),
        (br#"0{"a":1,}"#, BadJson),
        // Shapes per type.
        (b"0[]", BadPayload),
        (br#"0"x""#, BadPayload),
        (b"0null", BadPayload),
        (b"1{}", BadPayload),
        (b"1/admin,x", BadPayload),
        (b"2", BadPayload),
        (b"2/admin,", BadPayload),
        (b"2[]", BadPayload),
        (b"2{}", BadPayload),
        (br#"2"x""#, BadPayload),
        (b"2[{}]", BadPayload),
        (b"2[[\"x\"]]", BadPayload),
        (b"2[null]", BadPayload),
        (b"2[true]", BadPayload),
        (b"3", BadPayload),
        (b"3/admin,13", BadPayload),
        (b"3{}", BadPayload),
        (b"3\"x\"", BadPayload),
        (b"4", BadPayload),
        (b"4[]", BadPayload),
        (b"4null", BadPayload),
        (b"41", BadPayload),
        (b"51-", BadPayload),
        (br#"51-{"_placeholder":true,"num":0}"#, BadPayload),
        (b"61-", BadPayload),
        // Reserved names, also when escaped.
        (br#"2["connect"]"#, ReservedEvent),
        (br#"2["connect_error",1]"#, ReservedEvent),
        (br#"2/admin,["disconnect"]"#, ReservedEvent),
        (br#"2["disconnecting"]"#, ReservedEvent),
        (br#"2["newListener"]"#, ReservedEvent),
        (br#"2["removeListener"]"#, ReservedEvent),
        (br#"2["\u0063onnect"]"#, ReservedEvent),
        (br#"51-["\u0064isconnect"]"#, ReservedEvent),
        // Placeholders must name an attachment.
        (br#"51-["e",{"_placeholder":true,"num":1}]"#, BadPlaceholder),
        (br#"50-["e",{"_placeholder":true,"num":0}]"#, BadPlaceholder),
        (
            br#"52-["e",[{"x":{"_placeholder":true,"num":2}}]]"#,
            BadPlaceholder,
        ),
        (
            br#"51-["e",{"_placeholder":true,"num":-1}]"#,
            BadPlaceholder,
        ),
        (
            br#"51-["e",{"_placeholder":true,"num":0.5}]"#,
            BadPlaceholder,
        ),
        (
            br#"51-["e",{"_placeholder":true,"num":"0"}]"#,
            BadPlaceholder,
        ),
        (br#"51-["e",{"_placeholder":true}]"#, BadPlaceholder),
        (
            br#"61-[{"_placeholder":true,"num":18446744073709551615}]"#,
            BadPlaceholder,
        ),
    ];
    for (input, error) in cases {
        let input_text = String::from_utf8_lossy(input);
        assert_eq!(parse(input), Err(*error), "{input_text}");
    }
}

#[test]
fn reserved_names_are_only_exact_strings() {
    for input in [r#"2["Connect"]"#, r#"2["connect "]"#, r#"2["connected"]"#] {
        assert!(parse(input.as_bytes()).is_ok(), "{input}");
    }
}

#[test]
fn escaped_event_names_are_decoded() {
    let packet = parse(br#"2["\u0066oo\n",1]"#).expect("valid");
    let event = packet.event.expect("an event");
    assert!(matches!(&event.name, EventName::Str(Cow::Owned(name)) if name == "foo\n"));
    assert_eq!(event.args, b"1");
    let packet = parse(br#"2["a\ud800"]"#).expect("valid");
    let name = packet.event.expect("an event").name;
    assert_eq!(
        name,
        EventName::Str(Cow::Borrowed("a\u{fffd}\u{fffd}\u{fffd}"))
    );
}

#[test]
fn the_attachment_bound_is_a_parameter() {
    let input = br#"53-["e",{"_placeholder":true,"num":2}]"#;
    assert_eq!(
        parse_with_limit(input, 2),
        Err(PacketError::TooManyAttachments)
    );
    assert_eq!(parse_with_limit(input, 3).map(|p| p.placeholders), Ok(1));
    assert_eq!(
        parse_with_limit(input, 0),
        Err(PacketError::TooManyAttachments)
    );
}

#[test]
fn deep_nesting() {
    let deep = |n: usize| format!("2[\"e\",{}{}]", "[".repeat(n), "]".repeat(n));
    assert!(parse(deep(50_000).as_bytes()).is_ok());
    let binary = |n: usize| format!("51-[\"e\",{}{}]", "[".repeat(n), "]".repeat(n));
    assert!(parse(binary(100).as_bytes()).is_ok());
    assert_eq!(parse(binary(500).as_bytes()), Err(PacketError::BadJson));
}

#[test]
fn encode_then_parse_round_trips() {
    for (input, expected) in valid() {
        let mut encoded = Vec::new();
        expected.encode(&mut encoded);
        let text = String::from_utf8_lossy(&encoded);
        assert_eq!(parse(&encoded).as_ref(), Ok(&expected), "{input} -> {text}");
    }
}

#[test]
fn encode_writes_the_canonical_form() {
    // kind, namespace, ack id, attachments, payload, the wire text
    type Case = (
        PacketType,
        &'static str,
        Option<u64>,
        usize,
        &'static str,
        &'static str,
    );
    let cases: &[Case] = &[
        (Connect, "/", None, 0, "", "0"),
        (
            Connect,
            "/admin",
            None,
            0,
            r#"{"token":"1"}"#,
            r#"0/admin,{"token":"1"}"#,
        ),
        (
            PacketType::Event,
            "/admin",
            Some(12),
            0,
            r#"["x"]"#,
            r#"2/admin,12["x"]"#,
        ),
        (Ack, "/", Some(0), 3, "[]", "30[]"),
        (Disconnect, "/admin", None, 0, "", "1/admin,"),
        (BinaryEvent, "/", None, 1, r#"["a"]"#, r#"51-["a"]"#),
        (BinaryAck, "/", Some(15), 1, "[]", "61-15[]"),
        (
            BinaryAck,
            "/x",
            Some(u64::MAX),
            10,
            "[]",
            "610-/x,18446744073709551615[]",
        ),
    ];
    for &(kind, namespace, ack_id, attachments, payload, wire) in cases {
        let mut out = b"keep".to_vec();
        encode(
            kind,
            namespace,
            ack_id,
            attachments,
            payload.as_bytes(),
            &mut out,
        );
        assert_eq!(String::from_utf8_lossy(&out), format!("keep{wire}"));
    }
}

#[test]
fn server_packets() {
    let mut out = Vec::new();
    connect_ok("/", "Zx3_-a", &mut out);
    assert_eq!(out, br#"0{"sid":"Zx3_-a"}"#);

    out.clear();
    connect_ok("/admin", "a\"b", &mut out);
    assert_eq!(out, br#"0/admin,{"sid":"a\"b"}"#);

    out.clear();
    connect_error("/", "Invalid namespace", None, &mut out);
    assert_eq!(out, br#"4{"message":"Invalid namespace"}"#);

    out.clear();
    connect_error(
        "/admin",
        "no \"x\"\\\n\u{1}é",
        Some(br#"{"a":1}"#),
        &mut out,
    );
    assert_eq!(
        String::from_utf8_lossy(&out),
        r#"4/admin,{"message":"no \"x\"\\\n\u0001é","data":{"a":1}}"#
    );
    let parsed = parse(&out).expect("valid");
    assert_eq!((parsed.kind, parsed.namespace), (ConnectError, "/admin"));

    out.clear();
    disconnect("/admin", &mut out);
    assert_eq!(out, b"1/admin,");
    out.clear();
    disconnect("/", &mut out);
    assert_eq!(out, b"1");
}

#[test]
fn args_re_emit_as_an_array() {
    let cases = [
        (r#"2["e"]"#, "[]"),
        (r#"2["e",1]"#, "[1]"),
        (r#"2/a,5[ 7 , "x" , [1,2] ]"#, r#"["x" , [1,2]]"#),
    ];
    for (input, array) in cases {
        let packet = parse(input.as_bytes()).expect("valid");
        let mut out = Vec::new();
        packet.event.expect("event").write_args_array(&mut out);
        assert_eq!(String::from_utf8_lossy(&out), array, "{input}");
    }
}

#[test]
fn payload_and_args_borrow_the_input() {
    let input = br#"2/a,1["e",{"k":"v"}]"#.to_vec();
    let packet = parse(&input).expect("valid");
    let range = input.as_ptr_range();
    let payload = packet.payload.expect("payload");
    assert!(range.contains(&payload.as_ptr()));
    let args = packet.event.expect("event").args;
    assert!(range.contains(&args.as_ptr()));
    assert_eq!(args, br#"{"k":"v"}"#);
}

#[test]
fn errors_display() {
    assert_eq!(
        PacketError::BadType(b'9').to_string(),
        "unknown packet type 0x39"
    );
    let error: &dyn std::error::Error = &PacketError::ReservedEvent;
    assert_eq!(error.to_string(), "reserved event name");
}
