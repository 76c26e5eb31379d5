//! One Engine.IO session as a sans-IO state machine: heartbeat, the polling queue, the
//! upgrade to WebSocket, close reasons. The worker owns the sockets and the clock; it
//! feeds packets (`handle_packet`) and time (`handle_timeout` at `poll_timeout`), queues
//! output (`send`), and carries out the `Action`s it gets back.
//!
//! Heartbeat (v4): the server sends `2` every `ping_interval`; no `3` within
//! `ping_timeout` closes with "ping timeout"; a client `2` closes ("transport error",
//! Node's "invalid heartbeat direction").
//! Upgrade: on the probing WebSocket `2probe` → `3probe`; while probing, a held polling
//! GET is released with `6` every 100 ms; `5` switches the session to WebSocket and
//! the queue is flushed there; any other packet on the probe, or no `5` within
//! `upgrade_timeout`, aborts the upgrade only.
//!
//! Invariants: polling output waits in `queue`, bounded by `max_queued_bytes` (over it
//! the session closes, "transport error" — a client that never polls cannot grow it);
//! after `Closed` every call is a no-op; timers are absolute `Instant`s.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::packet::{Data, Packet, PacketType, PayloadWriter};
use super::request::Transport;

/// Session timing and bounds.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub upgrade_timeout: Duration,
    /// Bytes queued for a polling client that has not fetched them.
    pub max_queued_bytes: usize,
}

impl Default for Config {
    /// Node's defaults (pingInterval 25 s, pingTimeout 20 s, upgradeTimeout 10 s).
    fn default() -> Config {
        Config {
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            upgrade_timeout: Duration::from_secs(10),
            max_queued_bytes: 256 << 10,
        }
    }
}

/// How often a held GET is released with a noop while an upgrade is probed.
pub const NOOP_EVERY: Duration = Duration::from_millis(100);

/// Why a session ended, with Node's names (they reach Socket.IO's `disconnect` reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client sent `1`, or its transport closed.
    TransportClose,
    /// A protocol error on the transport (a client ping, a queue past its bound).
    TransportError,
    PingTimeout,
    /// A packet that does not decode.
    ParseError,
    /// The server closed it.
    ForcedClose,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TransportClose => "transport close",
            CloseReason::TransportError => "transport error",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
            CloseReason::ForcedClose => "forced close",
        }
    }
}

/// Which transport a packet came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Via {
    /// The session's current transport.
    Current,
    /// The WebSocket probing an upgrade.
    Probe,
}

/// What the worker must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing.
    None,
    /// Hand a message up (to Socket.IO).
    Deliver,
    /// Send `3probe` on the probing WebSocket.
    ProbeReply,
    /// Send `packet` now on the WebSocket (the session is on WebSocket).
    SendNow(Outbound),
    /// Something was queued for polling: answer a held GET, if any (`take_payload`).
    PollReady,
    /// Release a held GET with a noop (`6`) while an upgrade is probed.
    ReleaseGet,
    /// The upgrade is done: end any held GET, write `take_queue()` on the WebSocket,
    /// and use it from now on.
    Upgraded,
    /// The upgrade failed: close the probing WebSocket; the session goes on.
    AbortUpgrade,
    /// The session is over: close its transports, tell Socket.IO why.
    Close(CloseReason),
}

/// A packet for the client, as queued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outbound {
    /// A text packet, type digit included.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl Outbound {
    fn len(&self) -> usize {
        match self {
            Outbound::Text(b) | Outbound::Binary(b) => b.len(),
        }
    }
}

#[derive(Clone, Copy, Debug)]
struct Upgrade {
    deadline: Instant,
    probed: bool,
    next_noop: Instant,
}

/// One session.
#[derive(Debug)]
pub struct Session {
    config: Config,
    transport: Transport,
    closed: bool,
    queue: VecDeque<Outbound>,
    queued_bytes: usize,
    next_ping: Instant,
    pong_due: Option<Instant>,
    upgrade: Option<Upgrade>,
}

impl Session {
    pub fn new(transport: Transport, config: Config, now: Instant) -> Session {
        Session {
            config,
            transport,
            closed: false,
            queue: VecDeque::new(),
            queued_bytes: 0,
            next_ping: now + config.ping_interval,
            pong_due: None,
            upgrade: None,
        }
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    pub fn is_upgrading(&self) -> bool {
        self.upgrade.is_some()
    }

    /// Bytes waiting for a polling GET.
    pub fn queued_bytes(&self) -> usize {
        self.queued_bytes
    }

    /// A WebSocket with this session's sid asks to upgrade it. `false`: refuse it (not
    /// a polling session, or an upgrade is already under way).
    pub fn start_upgrade(&mut self, now: Instant) -> bool {
        if self.closed || self.transport != Transport::Polling || self.upgrade.is_some() {
            return false;
        }
        self.upgrade = Some(Upgrade {
            deadline: now + self.config.upgrade_timeout,
            probed: false,
            next_noop: now,
        });
        true
    }

    /// The probing WebSocket went away: the session stays on polling.
    pub fn abort_upgrade(&mut self) {
        self.upgrade = None;
    }

    /// Whether an upgrade has been probed (`3probe` sent) and waits for `5`.
    pub fn is_probed(&self) -> bool {
        self.upgrade.is_some_and(|u| u.probed)
    }

    /// One packet from the client. `Action::Deliver` means `packet` is a message for
    /// the layer above.
    pub fn handle_packet(&mut self, now: Instant, via: Via, packet: &Packet<'_>) -> Action {
        if self.closed {
            return Action::None;
        }
        if via == Via::Probe {
            return self.handle_probe_packet(now, packet);
        }
        match packet.kind {
            PacketType::Message => Action::Deliver,
            PacketType::Pong => {
                if self.pong_due.take().is_some() {
                    self.next_ping = now + self.config.ping_interval;
                }
                Action::None
            }
            PacketType::Ping => self.close(CloseReason::TransportError),
            PacketType::Close => self.close(CloseReason::TransportClose),
            PacketType::Noop | PacketType::Upgrade => Action::None,
            PacketType::Open => self.close(CloseReason::ParseError),
        }
    }

    fn handle_probe_packet(&mut self, now: Instant, packet: &Packet<'_>) -> Action {
        let Some(upgrade) = self.upgrade.as_mut() else {
            return Action::AbortUpgrade;
        };
        match packet.kind {
            PacketType::Ping if packet.is_probe() && !upgrade.probed => {
                upgrade.probed = true;
                upgrade.next_noop = now;
                Action::ProbeReply
            }
            PacketType::Upgrade if upgrade.probed && matches!(packet.data, Data::Text(b"")) => {
                self.upgrade = None;
                self.transport = Transport::WebSocket;
                Action::Upgraded
            }
            _ => {
                self.upgrade = None;
                Action::AbortUpgrade
            }
        }
    }

    /// Queues a packet for the client: on WebSocket it goes out now
    /// (`Action::SendNow`); on polling it waits for a GET (`Action::PollReady`).
    pub fn send(&mut self, packet: Outbound) -> Action {
        if self.closed {
            return Action::None;
        }
        if self.transport == Transport::WebSocket {
            return Action::SendNow(packet);
        }
        if self.queued_bytes + packet.len() > self.config.max_queued_bytes {
            return self.close(CloseReason::TransportError);
        }
        self.queued_bytes += packet.len();
        self.queue.push_back(packet);
        Action::PollReady
    }

    /// The polling body for a GET: as many queued packets as fit in `max_bytes` (at
    /// least one), or `None` if nothing is queued (hold the GET).
    pub fn take_payload(&mut self, max_bytes: usize) -> Option<Vec<u8>> {
        if self.queue.is_empty() {
            return None;
        }
        let mut writer = PayloadWriter::default();
        while let Some(next) = self.queue.front() {
            if !writer.is_empty() && writer.len() + 1 + next.len() * 4 / 3 + 4 > max_bytes {
                break;
            }
            let packet = self.queue.pop_front()?;
            self.queued_bytes -= packet.len();
            match &packet {
                Outbound::Text(b) => writer.encoded(b),
                Outbound::Binary(b) => writer.binary(b),
            }
        }
        Some(writer.finish())
    }

    /// What is queued for the client, in order (left in the queue).
    pub fn queued(&self) -> impl Iterator<Item = &Outbound> {
        self.queue.iter()
    }

    /// After `Action::Upgraded`: everything queued, to write on the WebSocket in order.
    pub fn take_queue(&mut self) -> Vec<Outbound> {
        self.queued_bytes = 0;
        self.queue.drain(..).collect()
    }

    /// Ends the session from the server side.
    pub fn close(&mut self, reason: CloseReason) -> Action {
        if self.closed {
            return Action::None;
        }
        self.closed = true;
        self.queue.clear();
        self.queued_bytes = 0;
        self.upgrade = None;
        Action::Close(reason)
    }

    /// When `handle_timeout` next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        let heartbeat = self.pong_due.unwrap_or(self.next_ping);
        Some(match self.upgrade {
            Some(u) if u.probed => heartbeat.min(u.deadline).min(u.next_noop),
            Some(u) => heartbeat.min(u.deadline),
            None => heartbeat,
        })
    }

    /// Runs the timers due at `now`. `held_get`: whether a polling GET is held open.
    /// Call again while it returns something other than `Action::None`.
    pub fn handle_timeout(&mut self, now: Instant, held_get: bool) -> Action {
        if self.closed {
            return Action::None;
        }
        if self.pong_due.is_some_and(|due| now >= due) {
            return self.close(CloseReason::PingTimeout);
        }
        if let Some(upgrade) = self.upgrade.as_mut() {
            if now >= upgrade.deadline {
                self.upgrade = None;
                return Action::AbortUpgrade;
            }
            if upgrade.probed && held_get && now >= upgrade.next_noop {
                upgrade.next_noop = now + NOOP_EVERY;
                return Action::ReleaseGet;
            }
        }
        if self.pong_due.is_none() && now >= self.next_ping {
            self.pong_due = Some(now + self.config.ping_timeout);
            return self.send(Outbound::Text(Bytes::from_static(b"2")));
        }
        Action::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engineio::packet::decode_text;

    fn config() -> Config {
        Config {
            ping_interval: Duration::from_millis(1000),
            ping_timeout: Duration::from_millis(800),
            upgrade_timeout: Duration::from_secs(10),
            max_queued_bytes: 1000,
        }
    }

    fn packet(text: &str) -> Packet<'_> {
        decode_text(text.as_bytes()).expect("valid packet")
    }

    fn text(s: &'static str) -> Outbound {
        Outbound::Text(Bytes::from_static(s.as_bytes()))
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_server_pings_and_a_pong_rearms_the_interval() {
        let t0 = Instant::now();
        let mut s = Session::new(Transport::WebSocket, config(), t0);
        assert_eq!(s.poll_timeout(), Some(t0 + ms(1000)));
        assert_eq!(s.handle_timeout(t0 + ms(999), false), Action::None);
        assert_eq!(
            s.handle_timeout(t0 + ms(1000), false),
            Action::SendNow(text("2"))
        );
        assert_eq!(s.poll_timeout(), Some(t0 + ms(1800)));
        assert_eq!(
            s.handle_packet(t0 + ms(1100), Via::Current, &packet("3")),
            Action::None
        );
        assert_eq!(s.poll_timeout(), Some(t0 + ms(2100)));
        // A pong nobody asked for changes nothing.
        assert_eq!(
            s.handle_packet(t0 + ms(1200), Via::Current, &packet("3")),
            Action::None
        );
        assert_eq!(s.poll_timeout(), Some(t0 + ms(2100)));
    }

    #[test]
    fn no_pong_within_the_timeout_closes() {
        let t0 = Instant::now();
        let mut s = Session::new(Transport::WebSocket, config(), t0);
        s.handle_timeout(t0 + ms(1000), false);
        assert_eq!(s.handle_timeout(t0 + ms(1799), false), Action::None);
        assert_eq!(
            s.handle_timeout(t0 + ms(1800), false),
            Action::Close(CloseReason::PingTimeout)
        );
        assert!(s.is_closed());
        assert_eq!(s.poll_timeout(), None);
        assert_eq!(s.send(text("4x")), Action::None);
    }

    #[test]
    fn client_pings_and_closes_end_the_session() {
        let t0 = Instant::now();
        let mut s = Session::new(Transport::Polling, config(), t0);
        assert_eq!(
            s.handle_packet(t0, Via::Current, &packet("2")),
            Action::Close(CloseReason::TransportError)
        );
        let mut s = Session::new(Transport::Polling, config(), t0);
        assert_eq!(
            s.handle_packet(t0, Via::Current, &packet("4hi")),
            Action::Deliver
        );
        assert_eq!(
            s.handle_packet(t0, Via::Current, &packet("1")),
            Action::Close(CloseReason::TransportClose)
        );
        assert_eq!(
            s.handle_packet(t0, Via::Current, &packet("4hi")),
            Action::None
        );
    }

    #[test]
    fn polling_output_waits_for_a_get_and_is_bounded() {
        let t0 = Instant::now();
        let mut s = Session::new(Transport::Polling, config(), t0);
        assert_eq!(s.take_payload(1000), None);
        assert_eq!(s.send(text("4a")), Action::PollReady);
        assert_eq!(
            s.send(Outbound::Binary(Bytes::from_static(&[1, 2, 3, 4]))),
            Action::PollReady
        );
        assert_eq!(s.queued_bytes(), 6);
        assert_eq!(
            s.take_payload(1000).as_deref(),
            Some(&b"4a\x1ebAQIDBA=="[..])
        );
        assert_eq!(s.queued_bytes(), 0);
        // A small limit still sends one packet, and leaves the rest queued.
        s.send(text("4first"));
        s.send(text("4second"));
        assert_eq!(s.take_payload(4).as_deref(), Some(&b"4first"[..]));
        assert_eq!(s.take_payload(4).as_deref(), Some(&b"4second"[..]));
        // A client that never polls: past the bound the session closes.
        let big = Outbound::Text(Bytes::from(vec![b'4'; 600]));
        assert_eq!(s.send(big.clone()), Action::PollReady);
        assert_eq!(s.send(big), Action::Close(CloseReason::TransportError));
        assert_eq!(s.queued_bytes(), 0);
    }

    #[test]
    fn an_upgrade_probes_releases_the_get_and_switches() {
        let t0 = Instant::now();
        let mut s = Session::new(Transport::Polling, config(), t0);
        s.send(text("4queued"));
        assert!(s.start_upgrade(t0));
        assert!(!s.start_upgrade(t0), "a second WebSocket is refused");
        assert_eq!(
            s.handle_packet(t0, Via::Probe, &packet("2probe")),
            Action::ProbeReply
        );
        assert_eq!(s.handle_timeout(t0, true), Action::ReleaseGet);
        assert_eq!(s.handle_timeout(t0 + ms(50), true), Action::None);
        assert_eq!(s.handle_timeout(t0 + ms(100), true), Action::ReleaseGet);
        assert_eq!(s.handle_timeout(t0 + ms(300), false), Action::None);
        assert_eq!(
            s.handle_packet(t0 + ms(300), Via::Probe, &packet("5")),
            Action::Upgraded
        );
        assert_eq!(s.transport(), Transport::WebSocket);
        assert_eq!(s.take_queue(), vec![text("4queued")]);
        assert_eq!(s.send(text("4after")), Action::SendNow(text("4after")));
        assert!(!s.start_upgrade(t0), "already on WebSocket");
    }

    #[test]
    fn a_bad_probe_or_a_slow_one_aborts_only_the_upgrade() {
        let t0 = Instant::now();
        let mut s = Session::new(Transport::Polling, config(), t0);
        s.start_upgrade(t0);
        assert_eq!(
            s.handle_packet(t0, Via::Probe, &packet("4hi")),
            Action::AbortUpgrade
        );
        assert!(!s.is_upgrading() && !s.is_closed());
        assert_eq!(s.transport(), Transport::Polling);

        s.start_upgrade(t0);
        assert_eq!(
            s.handle_packet(t0, Via::Probe, &packet("5")),
            Action::AbortUpgrade
        );

        s.start_upgrade(t0);
        s.handle_packet(t0, Via::Probe, &packet("2probe"));
        assert_eq!(
            s.handle_timeout(t0 + Duration::from_secs(10), false),
            Action::AbortUpgrade
        );
        assert!(!s.is_closed());
        assert_eq!(s.transport(), Transport::Polling);
    }

    #[test]
    fn pings_on_polling_are_queued_like_any_packet() {
        let t0 = Instant::now();
        let mut s = Session::new(Transport::Polling, config(), t0);
        assert_eq!(s.handle_timeout(t0 + ms(1000), false), Action::PollReady);
        assert_eq!(s.take_payload(100).as_deref(), Some(&b"2"[..]));
    }
}
