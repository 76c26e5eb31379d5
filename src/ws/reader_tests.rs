use super::*;
use crate::ws::frame::FrameHead;
use crate::ws::mask::apply_mask;

#[derive(Debug, PartialEq, Eq, Clone)]
enum Ev {
    Msg(bool, Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    Close(Option<u16>, String),
}

#[derive(Default)]
struct Rec(Vec<Ev>);

impl Visitor for Rec {
    fn message(&mut self, text: bool, payload: Payload<'_>) {
        self.0.push(Ev::Msg(text, payload.as_slice().to_vec()));
    }
    fn ping(&mut self, p: &[u8]) {
        self.0.push(Ev::Ping(p.to_vec()));
    }
    fn pong(&mut self, p: &[u8]) {
        self.0.push(Ev::Pong(p.to_vec()));
    }
    fn close(&mut self, code: Option<CloseCode>, reason: &str) {
        self.0
            .push(Ev::Close(code.map(|c| c.0), reason.to_string()));
    }
}

const SERVER: ReadConfig = ReadConfig {
    role: Role::Server,
    max_message: 1 << 20,
};

/// A masked client frame with raw first-byte control (for reserved bits and opcodes).
fn raw_frame(b0: u8, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let op = OpCode::from_bits(b0 & 0xF).unwrap_or(OpCode::Binary);
    let head = FrameHead::new(b0 & 0x80 != 0, op, payload.len(), Some(key));
    let mut out = head.as_bytes().to_vec();
    out[0] = b0;
    let mut body = payload.to_vec();
    apply_mask(&mut body, key, 0);
    out.extend_from_slice(&body);
    out
}

fn frame(fin: bool, op: OpCode, payload: &[u8]) -> Vec<u8> {
    raw_frame(
        (u8::from(fin) << 7) | op as u8,
        payload,
        [0x11, 0x22, 0x33, 0x44],
    )
}

fn run(chunks: &[&[u8]], cfg: &ReadConfig) -> (Vec<Ev>, Result<(), Violation>) {
    let mut r = Reader::default();
    let mut rec = Rec::default();
    for c in chunks {
        let mut c = c.to_vec();
        if let Err(v) = r.feed(&mut c, cfg, &mut rec) {
            return (rec.0, Err(v));
        }
    }
    (rec.0, Ok(()))
}

fn run_whole(bytes: &[u8]) -> (Vec<Ev>, Result<(), Violation>) {
    run(&[bytes], &SERVER)
}

/// Feeding the stream in every two-way split gives the same events as feeding it whole.
fn assert_split_invariant(bytes: &[u8]) {
    let whole = run_whole(bytes);
    for cut in 0..=bytes.len() {
        let split = run(&[&bytes[..cut], &bytes[cut..]], &SERVER);
        assert_eq!(split, whole, "cut at {cut}");
    }
    let ones: Vec<&[u8]> = bytes.chunks(1).collect();
    assert_eq!(run(&ones, &SERVER), whole, "one byte at a time");
}

#[test]
fn single_frames_of_every_length_form() {
    for len in [0usize, 1, 125, 126, 127, 65535, 65536, 200_000] {
        let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let (ev, res) = run_whole(&frame(true, OpCode::Binary, &payload));
        assert_eq!(res, Ok(()));
        assert_eq!(ev, vec![Ev::Msg(false, payload)], "len {len}");
    }
}

#[test]
fn whole_single_frame_is_delivered_in_place() {
    struct InPlace(bool);
    impl Visitor for InPlace {
        fn message(&mut self, _: bool, p: Payload<'_>) {
            self.0 = matches!(p, Payload::InPlace(_));
        }
        fn ping(&mut self, _: &[u8]) {}
        fn pong(&mut self, _: &[u8]) {}
        fn close(&mut self, _: Option<CloseCode>, _: &str) {}
    }
    let mut bytes = frame(true, OpCode::Text, b"hello");
    let mut v = InPlace(false);
    let mut r = Reader::default();
    r.feed(&mut bytes, &SERVER, &mut v).unwrap();
    assert!(v.0);
    assert_eq!(r.buffered_capacity(), 0, "nothing kept after a whole frame");
}

#[test]
fn splits_at_every_byte_give_the_same_events() {
    let mut stream = frame(true, OpCode::Text, "héllo €".as_bytes());
    stream.extend(frame(false, OpCode::Text, "frag".as_bytes()));
    stream.extend(frame(true, OpCode::Ping, b"p"));
    stream.extend(frame(false, OpCode::Continuation, &[0xE2, 0x82]));
    stream.extend(frame(true, OpCode::Continuation, &[0xAC, b'!']));
    stream.extend(frame(true, OpCode::Binary, &[0u8; 300]));
    stream.extend(frame(true, OpCode::Pong, b"unsolicited"));
    stream.extend(frame(true, OpCode::Close, &[0x03, 0xE8, b'o', b'k']));
    let (ev, res) = run_whole(&stream);
    assert_eq!(res, Ok(()));
    assert_eq!(
        ev,
        vec![
            Ev::Msg(true, "héllo €".as_bytes().to_vec()),
            Ev::Ping(b"p".to_vec()),
            Ev::Msg(true, "frag€!".as_bytes().to_vec()),
            Ev::Msg(false, vec![0; 300]),
            Ev::Pong(b"unsolicited".to_vec()),
            Ev::Close(Some(1000), "ok".into()),
        ]
    );
    assert_split_invariant(&stream);
}

#[test]
fn control_frame_with_a_long_length_form_split_in_its_header() {
    // A ping whose 2-byte payload length uses the 16-bit form (found by fuzzing): the
    // header split at every point must still give the ping.
    let key = [5, 6, 7, 8];
    let mut bytes = vec![0x89, 0xFE, 0x00, 0x02];
    bytes.extend_from_slice(&key);
    bytes.extend_from_slice(&[b'h' ^ 5, b'i' ^ 6]);
    bytes.extend(frame(true, OpCode::Text, b"after"));
    assert_eq!(
        run_whole(&bytes),
        (
            vec![Ev::Ping(b"hi".to_vec()), Ev::Msg(true, b"after".to_vec())],
            Ok(())
        )
    );
    assert_split_invariant(&bytes);
}

#[test]
fn input_after_close_is_ignored() {
    let mut stream = frame(true, OpCode::Close, &[]);
    stream.extend(frame(true, OpCode::Text, b"late"));
    stream.extend_from_slice(&[0xFF; 10]);
    let (ev, res) = run_whole(&stream);
    assert_eq!(res, Ok(()));
    assert_eq!(ev, vec![Ev::Close(None, String::new())]);
}

#[test]
fn each_rule_maps_to_its_violation() {
    let unmasked = {
        let mut f = FrameHead::new(true, OpCode::Text, 2, None)
            .as_bytes()
            .to_vec();
        f.extend_from_slice(b"hi");
        f
    };
    let cases: Vec<(&str, Vec<u8>, Violation)> = vec![
        ("unmasked", unmasked, Violation::UnmaskedClientFrame),
        (
            "rsv1",
            raw_frame(0x80 | 0x40 | 1, b"x", [1; 4]),
            Violation::ReservedBits,
        ),
        (
            "rsv3 on close",
            raw_frame(0x80 | 0x10 | 8, &[3, 232], [1; 4]),
            Violation::ReservedBits,
        ),
        (
            "opcode 3",
            raw_frame(0x80 | 3, b"", [1; 4]),
            Violation::ReservedOpCode,
        ),
        (
            "opcode 0xB",
            raw_frame(0x80 | 0xB, b"", [1; 4]),
            Violation::ReservedOpCode,
        ),
        (
            "long ping",
            frame(true, OpCode::Ping, &[0; 126]),
            Violation::ControlFrameTooLong,
        ),
        (
            "fragmented ping",
            frame(false, OpCode::Ping, b""),
            Violation::FragmentedControlFrame,
        ),
        (
            "lone continuation",
            frame(true, OpCode::Continuation, b"x"),
            Violation::UnexpectedContinuation,
        ),
        (
            "bad utf8",
            frame(true, OpCode::Text, &[0xC0, 0x80]),
            Violation::InvalidUtf8,
        ),
        (
            "close 1 byte",
            frame(true, OpCode::Close, &[3]),
            Violation::CloseFrameTooShort,
        ),
        (
            "close 1005",
            frame(true, OpCode::Close, &1005u16.to_be_bytes()),
            Violation::InvalidCloseCode,
        ),
        (
            "close 999",
            frame(true, OpCode::Close, &999u16.to_be_bytes()),
            Violation::InvalidCloseCode,
        ),
        (
            "close 2999",
            frame(true, OpCode::Close, &2999u16.to_be_bytes()),
            Violation::InvalidCloseCode,
        ),
        (
            "close bad reason",
            frame(true, OpCode::Close, &[3, 232, 0xFF]),
            Violation::InvalidUtf8,
        ),
    ];
    for (name, bytes, want) in cases {
        assert_eq!(run_whole(&bytes).1, Err(want), "{name}");
    }
    let mut interleaved = frame(false, OpCode::Text, b"a");
    interleaved.extend(frame(true, OpCode::Binary, b"b"));
    assert_eq!(
        run_whole(&interleaved).1,
        Err(Violation::InterleavedDataFrame)
    );
}

#[test]
fn too_big_is_refused_from_the_header_alone() {
    let cfg = ReadConfig {
        role: Role::Server,
        max_message: 1000,
    };
    // Declares 2^40 bytes; only the header arrives.
    let head = FrameHead::new(true, OpCode::Binary, 1 << 40, Some([1; 4]));
    assert_eq!(
        run(&[head.as_bytes()], &cfg).1,
        Err(Violation::MessageTooBig)
    );
    // Fragments that add up past the limit.
    let mut s = frame(false, OpCode::Binary, &[0; 600]);
    s.extend(frame(true, OpCode::Continuation, &[0; 600]));
    assert_eq!(run(&[&s], &cfg).1, Err(Violation::MessageTooBig));
    assert_eq!(
        run(&[&frame(true, OpCode::Binary, &[0; 1000])], &cfg).1,
        Ok(())
    );
}

#[test]
fn invalid_utf8_fails_before_the_message_ends() {
    // A text frame announcing 100 bytes whose first 10 arrive and are already invalid.
    let mut bytes = frame(true, OpCode::Text, &[0xF8; 100]);
    bytes.truncate(bytes.len() - 90);
    assert_eq!(run_whole(&bytes).1, Err(Violation::InvalidUtf8));
    // The first fragment is invalid; the others never arrive.
    let bytes = frame(false, OpCode::Text, &[b'a', 0xED, 0xA0, 0x80]);
    assert_eq!(run_whole(&bytes).1, Err(Violation::InvalidUtf8));
}

#[test]
fn text_split_at_every_byte_of_multibyte_characters() {
    let text = "a€𝄞κόσμε".as_bytes();
    for cut in 0..=text.len() {
        let mut s = frame(false, OpCode::Text, &text[..cut]);
        s.extend(frame(true, OpCode::Continuation, &text[cut..]));
        assert_eq!(
            run_whole(&s),
            (vec![Ev::Msg(true, text.to_vec())], Ok(())),
            "cut {cut}"
        );
    }
}

#[test]
fn client_role_rejects_masked_frames_and_reads_unmasked() {
    let cfg = ReadConfig {
        role: Role::Client,
        max_message: 1 << 20,
    };
    assert_eq!(
        run(&[&frame(true, OpCode::Text, b"x")], &cfg).1,
        Err(Violation::MaskedServerFrame)
    );
    let mut f = FrameHead::new(true, OpCode::Text, 2, None)
        .as_bytes()
        .to_vec();
    f.extend_from_slice(b"ok");
    assert_eq!(
        run(&[&f], &cfg),
        (vec![Ev::Msg(true, b"ok".to_vec())], Ok(()))
    );
}

#[test]
fn reader_state_stays_small() {
    assert!(
        std::mem::size_of::<Reader>() <= 80,
        "{}",
        std::mem::size_of::<Reader>()
    );
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048),
                                       cut in 0usize..2048) {
            let cut = cut.min(data.len());
            let _ = run(&[&data[..cut], &data[cut..]], &SERVER);
            let _ = run(&[&data], &ReadConfig { role: Role::Client, max_message: 4096 });
        }

        #[test]
        fn encode_parse_round_trip(msgs in proptest::collection::vec(
            (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..3000), 1usize..4), 1..6),
            cut in 0usize..20000) {
            let mut stream = Vec::new();
            let mut want = Vec::new();
            for (text, body, parts) in &msgs {
                let body: Vec<u8> = if *text {
                    String::from_utf8_lossy(body).into_owned().into_bytes()
                } else { body.clone() };
                let op = if *text { OpCode::Text } else { OpCode::Binary };
                let step = body.len().div_ceil(*parts).max(1);
                let pieces: Vec<&[u8]> = if body.is_empty() { vec![&[][..]] } else { body.chunks(step).collect() };
                for (i, p) in pieces.iter().enumerate() {
                    let last = i + 1 == pieces.len();
                    let o = if i == 0 { op } else { OpCode::Continuation };
                    stream.extend(frame(last, o, p));
                }
                want.push(Ev::Msg(*text, body));
            }
            let cut = cut.min(stream.len());
            let got = run(&[&stream[..cut], &stream[cut..]], &SERVER);
            prop_assert_eq!(got, (want, Ok(())));
        }
    }
}
