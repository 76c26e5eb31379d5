//! `--proto socketio`: the Socket.IO client layer of the load generator, without a parser.
//!
//! A Socket.IO client connects to `/socket.io/?EIO=4&transport=websocket` at the URL's
//! host and port ([`PATH`]), reads the Engine.IO open packet `0{…}`, sends the Socket.IO
//! CONNECT for `/` (`40`) and counts as open once the server's `40{"sid":…}` arrives.
//! From then on the server's Engine.IO pings (`2`, with any data) are answered with
//! pongs (`3`, the same data) by the client layer itself ([`control`]), so a heartbeat
//! never reaches a mode and never counts as a reply. Everything else is the mode's:
//! events `42[…]` and acks `43<id>[…]` (the Engine.IO `4` included), recognised by
//! prefix ([`EchoFrames`], and `json.rs` for the shootout frames).
//!
//! Invariants: every function here is pure and allocation-free; nothing read from the
//! network can panic (every index is checked); a frame the handshake does not expect
//! fails its connection with a reason, it is never skipped.

/// The wire protocol a generator speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientProto {
    /// Plain WebSocket messages at the URL's path.
    #[default]
    Ws,
    /// Socket.IO v5 over Engine.IO v4, WebSocket transport (`bench connect`: or
    /// polling, `--transport`), namespace `/`, at `/socket.io/` on the URL's host and
    /// port (the sio-shootout contract).
    Socketio,
}

impl ClientProto {
    /// The name used in reports: `ws` or `socketio`.
    pub fn name(self) -> &'static str {
        match self {
            ClientProto::Ws => "ws",
            ClientProto::Socketio => "socketio",
        }
    }
}

/// The request target of a Socket.IO client: Engine.IO 4, WebSocket from the start.
pub const PATH: &str = "/socket.io/?EIO=4&transport=websocket";

/// The request target of a Socket.IO client on HTTP long-polling (`&sid=` follows once
/// the session is open).
pub const POLLING_PATH: &str = "/socket.io/?EIO=4&transport=polling";

/// The Engine.IO transport a Socket.IO client uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// WebSocket from the start (every mode).
    #[default]
    Websocket,
    /// HTTP long-polling, never upgraded (`bench connect --proto socketio` only).
    Polling,
}

impl Transport {
    /// The name used in reports: `websocket` or `polling`.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Websocket => "websocket",
            Transport::Polling => "polling",
        }
    }
}

/// Refuses `--transport polling` where it is not measured: in any mode but `connect`,
/// and over plain WebSocket (which has no other transport).
pub fn check_transport(mode: &str, proto: ClientProto, transport: Transport) -> Result<(), String> {
    match (transport, proto) {
        (Transport::Websocket, _) => Ok(()),
        (Transport::Polling, _) if mode != "connect" => Err(format!(
            "--transport polling is supported by `bench connect` only (idle sessions), \
             not by `bench {mode}`"
        )),
        (Transport::Polling, ClientProto::Ws) => Err(
            "--transport polling needs --proto socketio: HTTP long-polling is an Engine.IO \
             transport, plain WebSocket has no other"
                .into(),
        ),
        (Transport::Polling, ClientProto::Socketio) => Ok(()),
    }
}

/// The Socket.IO CONNECT for namespace `/`, as an Engine.IO message.
pub const CONNECT: &[u8] = b"40";

/// Where a Socket.IO client's handshake stands (after the WebSocket upgrade).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Waiting for the Engine.IO open packet `0{…}`.
    AwaitOpen,
    /// CONNECT sent, waiting for `40{"sid":…}`.
    AwaitConnect,
    /// Connected to `/`: frames belong to the mode.
    Connected,
}

/// What the client layer does with one message from a Socket.IO server.
#[derive(Debug, PartialEq, Eq)]
pub enum Control<'a> {
    /// Hand it to the mode.
    Pass,
    /// An Engine.IO ping: answer `3` + this data, and hand nothing on.
    Pong(&'a [u8]),
    /// The open packet: send [`CONNECT`], then wait for its answer.
    Open,
    /// The CONNECT was accepted: the client is open.
    Connected,
    /// The connection cannot go on (a refusal, a close, an unexpected frame).
    Fail(&'static str),
}

/// Classifies one message from the server at `stage`, by its first bytes only.
pub fn control(stage: Stage, text: bool, frame: &[u8]) -> Control<'_> {
    if !text {
        return match stage {
            Stage::Connected => Control::Pass, // an attachment: the mode's
            _ => Control::Fail("binary frame during the Socket.IO handshake"),
        };
    }
    match (stage, frame.first()) {
        (_, Some(b'2')) if stage != Stage::AwaitOpen => Control::Pong(&frame[1..]),
        (_, Some(b'1')) => Control::Fail("the server closed the Engine.IO session"),
        (Stage::AwaitOpen, Some(b'0')) if frame.get(1) == Some(&b'{') => Control::Open,
        (Stage::AwaitOpen, _) => Control::Fail("expected the Engine.IO open packet 0{...}"),
        (Stage::AwaitConnect, _) if frame.starts_with(br#"40{"sid":"#) => Control::Connected,
        (Stage::AwaitConnect, _) if frame.starts_with(b"44") => {
            Control::Fail("the server refused the Socket.IO CONNECT (connect_error)")
        }
        (Stage::AwaitConnect, _) => Control::Fail("expected the CONNECT answer 40{\"sid\":...}"),
        (Stage::Connected, _) if frame == b"41" => {
            Control::Fail("the server disconnected the socket (DISCONNECT)")
        }
        (Stage::Connected, _) => Control::Pass,
    }
}

/// `v` in decimal, in the tail of `buf`.
pub fn decimal(v: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    let mut v = v;
    loop {
        at -= 1;
        buf[at] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return &buf[at..];
        }
    }
}

/// The echo mode's frames around a payload `P` (a JSON string's content that needs no
/// escaping): `42["echo","P"]` is answered `42["echo","P"]`; with an ack,
/// `42<id>["echo","P"]` is answered `43<id>["P"]`. The id is the message's sequence
/// number, so a reply names the message it answers.
#[derive(Clone, Copy, Debug)]
pub struct EchoFrames {
    pub ack: bool,
}

const EVENT: &[u8] = b"42";
const ACK: &[u8] = b"43";
const ECHO_OPEN: &[u8] = br#"["echo",""#;
const ACK_OPEN: &[u8] = br#"[""#;
const CLOSE: &[u8] = br#""]"#;

impl EchoFrames {
    /// The bytes before and after `P` in the frame that sends message `seq`; the head
    /// is written into `buf`.
    pub fn request<'b>(&self, seq: u64, buf: &'b mut [u8; 48]) -> (&'b [u8], &'static [u8]) {
        let mut digits = [0u8; 20];
        let id: &[u8] = if self.ack {
            decimal(seq, &mut digits)
        } else {
            b""
        };
        let parts = [EVENT, id, ECHO_OPEN];
        let mut len = 0;
        for p in parts {
            buf[len..len + p.len()].copy_from_slice(p);
            len += p.len();
        }
        (&buf[..len], CLOSE)
    }

    /// The payload `P` of a reply to message `seq`, if `frame` is one (without looking
    /// at `P` itself).
    pub fn reply<'f>(&self, frame: &'f [u8], seq: u64) -> Option<&'f [u8]> {
        let rest = if self.ack {
            let mut digits = [0u8; 20];
            frame
                .strip_prefix(ACK)?
                .strip_prefix(decimal(seq, &mut digits))?
                .strip_prefix(ACK_OPEN)?
        } else {
            frame.strip_prefix(EVENT)?.strip_prefix(ECHO_OPEN)?
        };
        rest.strip_suffix(CLOSE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_handshake_goes_open_connect_connected() {
        let open = br#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        assert_eq!(control(Stage::AwaitOpen, true, open), Control::Open);
        assert_eq!(
            control(Stage::AwaitConnect, true, br#"40{"sid":"x1"}"#),
            Control::Connected
        );
        assert_eq!(
            control(Stage::Connected, true, br#"42["echo","a"]"#),
            Control::Pass
        );
        assert_eq!(control(Stage::Connected, true, b"43[]"), Control::Pass);
        assert_eq!(control(Stage::Connected, false, b"\x01\x02"), Control::Pass);
    }

    #[test]
    fn pings_are_answered_by_the_layer_and_never_passed_on() {
        for stage in [Stage::AwaitConnect, Stage::Connected] {
            assert_eq!(control(stage, true, b"2"), Control::Pong(b""));
            assert_eq!(control(stage, true, b"2probe"), Control::Pong(b"probe"));
        }
        // Before the open packet, a ping is no open packet.
        assert!(matches!(
            control(Stage::AwaitOpen, true, b"2"),
            Control::Fail(_)
        ));
    }

    #[test]
    fn unexpected_handshake_frames_fail() {
        let fails = [
            (Stage::AwaitOpen, true, &b"40"[..]),
            (Stage::AwaitOpen, true, b"0"),
            (Stage::AwaitOpen, true, b""),
            (Stage::AwaitOpen, false, b"0{}"),
            (Stage::AwaitConnect, true, b"40"),
            (
                Stage::AwaitConnect,
                true,
                br#"44{"message":"Invalid namespace"}"#,
            ),
            (Stage::AwaitConnect, true, br#"42["echo"]"#),
            (Stage::AwaitConnect, true, b""),
            (Stage::AwaitConnect, false, b"x"),
            (Stage::Connected, true, b"1"),
            (Stage::Connected, true, b"41"),
            (Stage::AwaitConnect, true, b"1"),
        ];
        for (stage, text, frame) in fails {
            assert!(
                matches!(control(stage, text, frame), Control::Fail(_)),
                "{stage:?} {}",
                String::from_utf8_lossy(frame)
            );
        }
    }

    #[test]
    fn decimals_are_written_in_the_tail() {
        let mut b = [0u8; 20];
        assert_eq!(decimal(0, &mut b), b"0");
        assert_eq!(decimal(1234567, &mut b), b"1234567");
        assert_eq!(decimal(u64::MAX, &mut b), b"18446744073709551615");
    }

    fn frame(f: EchoFrames, seq: u64, p: &[u8]) -> Vec<u8> {
        let mut buf = [0u8; 48];
        let (head, tail) = f.request(seq, &mut buf);
        [head, p, tail].concat()
    }

    #[test]
    fn echo_requests_have_the_socketio_shape() {
        let plain = EchoFrames { ack: false };
        let ack = EchoFrames { ack: true };
        assert_eq!(frame(plain, 7, b"abc"), br#"42["echo","abc"]"#);
        assert_eq!(frame(ack, 7, b"abc"), br#"427["echo","abc"]"#);
        assert_eq!(
            frame(ack, u64::MAX, b""),
            br#"4218446744073709551615["echo",""]"#
        );
    }

    #[test]
    fn echo_replies_are_recognised_by_prefix_and_id() {
        let plain = EchoFrames { ack: false };
        let ack = EchoFrames { ack: true };
        assert_eq!(plain.reply(br#"42["echo","abc"]"#, 3), Some(&b"abc"[..]));
        assert_eq!(plain.reply(br#"42["echo",""]"#, 3), Some(&b""[..]));
        assert_eq!(ack.reply(br#"4312["abc"]"#, 12), Some(&b"abc"[..]));
        let wrong: [(EchoFrames, &[u8], u64); 9] = [
            (ack, br#"4312["abc"]"#, 13),      // another id
            (ack, br#"43123["abc"]"#, 12),     // an id that only starts alike
            (ack, br#"42["echo","abc"]"#, 0),  // an event where an ack was due
            (plain, br#"430["abc"]"#, 0),      // an ack where an event was due
            (plain, br#"42["echo","abc""#, 0), // cut
            (plain, br#"42["ech","abc"]"#, 0),
            (plain, br#"42/x,["echo","abc"]"#, 0),
            (plain, b"2", 0),
            (plain, b"", 0),
        ];
        for (f, frame, seq) in wrong {
            assert_eq!(
                f.reply(frame, seq),
                None,
                "{}",
                String::from_utf8_lossy(frame)
            );
        }
    }

    #[test]
    fn names_are_the_flag_values() {
        assert_eq!(ClientProto::Ws.name(), "ws");
        assert_eq!(ClientProto::Socketio.name(), "socketio");
        assert_eq!(ClientProto::default(), ClientProto::Ws);
        assert_eq!(Transport::Websocket.name(), "websocket");
        assert_eq!(Transport::Polling.name(), "polling");
        assert_eq!(Transport::default(), Transport::Websocket);
    }

    #[test]
    fn polling_is_refused_outside_socketio_connect() {
        use ClientProto::{Socketio, Ws};
        use Transport::{Polling, Websocket};
        for mode in ["echo", "connect", "broadcast", "fanout"] {
            for proto in [Ws, Socketio] {
                assert_eq!(check_transport(mode, proto, Websocket), Ok(()));
            }
        }
        assert_eq!(check_transport("connect", Socketio, Polling), Ok(()));
        let e = check_transport("connect", Ws, Polling).unwrap_err();
        assert!(e.contains("--proto socketio"), "{e}");
        for mode in ["echo", "broadcast", "fanout"] {
            for proto in [Ws, Socketio] {
                let e = check_transport(mode, proto, Polling).unwrap_err();
                assert!(e.contains("`bench connect` only"), "{e}");
            }
        }
    }
}
