//! The epoll backend, on mio. Edge-triggered: one registration per socket for read and
//! write readiness, never modified afterwards.
//!
//! Reads land in one per-worker scratch buffer (64 KiB) lent to `Sink::data`; a
//! connection owns no read buffer of its own. A read shorter than the buffer is taken to
//! have drained the socket (with edge triggering, data that arrives later raises a new
//! event), which saves the `EAGAIN` read per event. A connection that fills the buffer
//! `READ_BUDGET` times in one event is put on `ready` and served again next turn, so
//! one fast sender cannot starve the others.
//!
//! Refused connections (`Sink::accepted` said no) get `Sink::refusal` and a FIN at once.
//! One whose request has not arrived yet is kept (no slot, just the socket, at most
//! `MAX_REFUSED` per worker, `REFUSED_LINGER` at most) and its input discarded until the
//! peer's FIN, so that the late request does not make the kernel reset the answer away.
//! Their tokens have a slot number of `REFUSED_SLOT` and up, which no connection reaches
//! (slots are bounded by the open-file limit).

use std::io::{self, IoSlice, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};

use super::conn_id::ConnId;
use super::driver::{ACCEPT_BACKOFF, Driver, OutOfFdsWarning, Sink};

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX);
const SCRATCH_BYTES: usize = 64 << 10;
const READ_BUDGET: usize = 4;
/// Accepts per turn. Small, so that in a connect storm the replies to existing clients
/// are flushed between batches (each accept or refusal costs a few syscalls): with 512,
/// scripts/bench-storm.sh saw their p99 at about 100 ms, with 64 at 30-66 ms.
const ACCEPT_BUDGET: usize = 64;
const MAX_IOVECS: usize = 64;
const EVENTS_PER_TURN: usize = 1024;
/// Refused sockets kept for their request at most; past it they are closed at once.
const MAX_REFUSED: usize = 1024;
/// How long a refused socket is kept waiting for the peer's FIN.
const REFUSED_LINGER: Duration = Duration::from_secs(2);
/// Token slot of the first refused socket (see the module doc).
const REFUSED_SLOT: u32 = 0xF000_0000;

struct Slot {
    stream: Option<TcpStream>,
    generation: u32,
}

pub struct Epoll {
    poll: Poll,
    events: Events,
    waker: Arc<Waker>,
    listener: Option<TcpListener>,
    /// Set after EMFILE/ENFILE: accepts wait until then.
    accept_backoff_until: Option<Instant>,
    out_of_fds: OutOfFdsWarning,
    slots: Vec<Slot>,
    scratch: Box<[u8]>,
    /// Connections with input left over from an earlier turn, or resumed after a pause.
    ready: Vec<ConnId>,
    ready_next: Vec<ConnId>,
    /// Refused sockets waiting for the peer's FIN, and until when.
    refused: slab::Slab<(TcpStream, Instant)>,
}

impl Epoll {
    pub fn new(listener: std::net::TcpListener) -> io::Result<Epoll> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let mut listener = TcpListener::from_std(listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Epoll {
            poll,
            events: Events::with_capacity(EVENTS_PER_TURN),
            waker,
            listener: Some(listener),
            accept_backoff_until: None,
            out_of_fds: OutOfFdsWarning::default(),
            slots: Vec::new(),
            scratch: vec![0u8; SCRATCH_BYTES].into_boxed_slice(),
            ready: Vec::new(),
            ready_next: Vec::new(),
            refused: slab::Slab::new(),
        })
    }

    /// A handle other threads use to wake this worker (`Sink::woken`).
    pub fn waker(&self) -> super::WorkerWaker {
        super::WorkerWaker::Mio(Arc::clone(&self.waker))
    }

    fn stream(&mut self, id: ConnId) -> Option<&mut TcpStream> {
        let slot = self.slots.get_mut(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.stream.as_mut()
    }

    fn accept_all(&mut self, sink: &mut impl Sink) {
        if let Some(until) = self.accept_backoff_until {
            if Instant::now() < until {
                return;
            }
            self.accept_backoff_until = None;
        }
        for _ in 0..ACCEPT_BUDGET {
            let Some(listener) = self.listener.as_ref() else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer, sink),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if is_fd_exhaustion(&e) => {
                    self.back_off_accepting(&e);
                    return;
                }
                // ECONNABORTED and friends concern one connection only.
                Err(e) => tracing::debug!(error = %e, "accept failed"),
            }
        }
        // Budget spent with connections still queued: come back next turn.
        self.accept_backoff_until = Some(Instant::now());
    }

    fn back_off_accepting(&mut self, e: &io::Error) {
        let now = Instant::now();
        self.accept_backoff_until = Some(now + ACCEPT_BACKOFF);
        self.out_of_fds.warn(e, now);
    }

    fn admit(&mut self, stream: TcpStream, peer: SocketAddr, sink: &mut impl Sink) {
        let Some(id) = sink.accepted(peer) else {
            return self.refuse(stream, sink.refusal());
        };
        let _ = stream.set_nodelay(true);
        if let Err(e) = self.register(id, stream) {
            tracing::warn!(error = %e, "cannot register connection");
            sink.hangup(id);
        }
    }

    fn register(&mut self, id: ConnId, mut stream: TcpStream) -> io::Result<()> {
        let token = Token(id.to_token() as usize);
        self.poll.registry().register(
            &mut stream,
            token,
            Interest::READABLE | Interest::WRITABLE,
        )?;
        let index = id.slot as usize;
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, || Slot {
                stream: None,
                generation: 0,
            });
        }
        self.slots[index] = Slot {
            stream: Some(stream),
            generation: id.generation,
        };
        Ok(())
    }

    /// Answers a refused connection and closes it (now, or once the peer's request and
    /// FIN are in: see the module doc).
    fn refuse(&mut self, mut stream: TcpStream, answer: &[u8]) {
        let input = discard_input(&mut stream, &mut self.scratch);
        if !answer.is_empty() {
            // A fresh socket's send buffer takes a few hundred bytes at once.
            let _ = stream.write(answer);
        }
        let _ = stream.shutdown(Shutdown::Write);
        if input != Discarded::Nothing || self.refused.len() >= MAX_REFUSED {
            return; // the request is read (or it is a storm): close now
        }
        let entry = self.refused.vacant_entry();
        let token = Token((u64::from(REFUSED_SLOT) + entry.key() as u64) as usize);
        if self
            .poll
            .registry()
            .register(&mut stream, token, Interest::READABLE)
            .is_ok()
        {
            entry.insert((stream, Instant::now() + REFUSED_LINGER));
        }
    }

    /// Input on a refused socket: discarded; closed at the peer's FIN.
    fn refused_input(&mut self, key: usize) {
        let Some((stream, _)) = self.refused.get_mut(key) else {
            return;
        };
        if discard_input(stream, &mut self.scratch) == Discarded::Closed {
            self.drop_refused(key);
        }
    }

    fn drop_refused(&mut self, key: usize) {
        if let Some((mut stream, _)) = self.refused.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut stream);
        }
    }

    /// Closes the refused sockets whose linger is over.
    fn expire_refused(&mut self) {
        if self.refused.is_empty() {
            return;
        }
        let now = Instant::now();
        let expired: Vec<usize> = self
            .refused
            .iter()
            .filter(|(_, (_, until))| *until <= now)
            .map(|(key, _)| key)
            .collect();
        for key in expired {
            self.drop_refused(key);
        }
    }

    /// Reads until the socket is drained, the sink pauses, or the budget is spent.
    fn read_conn(&mut self, id: ConnId, sink: &mut impl Sink) {
        for _ in 0..READ_BUDGET {
            let Some(slot) = self.slots.get_mut(id.slot as usize) else {
                return;
            };
            let Some(stream) = slot
                .stream
                .as_mut()
                .filter(|_| slot.generation == id.generation)
            else {
                return;
            };
            match stream.read(&mut self.scratch) {
                Ok(0) => return sink.hangup(id),
                Ok(n) => {
                    if !sink.data(id, &mut self.scratch[..n]) || n < self.scratch.len() {
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return sink.hangup(id),
            }
        }
        self.ready_next.push(id);
    }
}

/// What reading a refused socket until it would block found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Discarded {
    /// No bytes yet.
    Nothing,
    /// Some bytes, and the peer is still there.
    Some,
    /// The peer's FIN, or an error.
    Closed,
}

/// Reads and drops what `stream` has (a few reads at most).
fn discard_input(stream: &mut TcpStream, scratch: &mut [u8]) -> Discarded {
    let mut got = Discarded::Nothing;
    for _ in 0..READ_BUDGET {
        match stream.read(scratch) {
            Ok(0) => return Discarded::Closed,
            Ok(_) => got = Discarded::Some,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return Discarded::Closed,
        }
    }
    got
}

fn is_fd_exhaustion(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

impl Driver for Epoll {
    fn turn(&mut self, timeout: Option<Duration>, sink: &mut impl Sink) -> io::Result<()> {
        let mut timeout = timeout;
        if !self.ready.is_empty() {
            timeout = Some(Duration::ZERO);
        }
        if let Some(until) = self.accept_backoff_until {
            let left = until.saturating_duration_since(Instant::now());
            timeout = Some(timeout.map_or(left, |t| t.min(left)));
        }
        if let Err(e) = self.poll.poll(&mut self.events, timeout)
            && e.kind() != io::ErrorKind::Interrupted
        {
            return Err(e);
        }
        // Take the event list out so that handlers may borrow `self` mutably.
        let events = std::mem::replace(&mut self.events, Events::with_capacity(0));
        for event in events.iter() {
            match event.token() {
                LISTENER => self.accept_all(sink),
                WAKER => sink.woken(),
                Token(t) if t as u32 >= REFUSED_SLOT => {
                    self.refused_input((t as u32 - REFUSED_SLOT) as usize)
                }
                Token(t) => {
                    let id = ConnId::from_token(t as u64);
                    if event.is_writable() {
                        sink.writable(id);
                    }
                    if event.is_readable() || event.is_read_closed() || event.is_error() {
                        self.read_conn(id, sink);
                    }
                }
            }
        }
        self.events = events;
        if self.accept_backoff_until.is_some() {
            self.accept_all(sink);
        }
        let ready = std::mem::take(&mut self.ready);
        for &id in &ready {
            self.read_conn(id, sink);
        }
        self.ready = ready;
        self.ready.clear();
        std::mem::swap(&mut self.ready, &mut self.ready_next);
        self.expire_refused();
        Ok(())
    }

    fn write(&mut self, conn: ConnId, bufs: &[Bytes]) -> io::Result<usize> {
        let Some(stream) = self.stream(conn) else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let mut total = 0;
        for group in bufs.chunks(MAX_IOVECS) {
            let mut slices = [IoSlice::new(&[]); MAX_IOVECS];
            let mut want = 0;
            for (s, b) in slices.iter_mut().zip(group) {
                *s = IoSlice::new(b);
                want += b.len();
            }
            let written = loop {
                match stream.write_vectored(&slices[..group.len()]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break 0,
                    Err(e) => return Err(e),
                }
            };
            total += written;
            if written < want {
                break;
            }
        }
        Ok(total)
    }

    fn shutdown_write(&mut self, conn: ConnId) {
        if let Some(stream) = self.stream(conn) {
            let _ = stream.shutdown(Shutdown::Write);
        }
    }

    fn close(&mut self, conn: ConnId) {
        let Some(slot) = self.slots.get_mut(conn.slot as usize) else {
            return;
        };
        if slot.generation != conn.generation {
            return;
        }
        if let Some(mut stream) = slot.stream.take() {
            let _ = self.poll.registry().deregister(&mut stream);
        }
    }

    fn detach(&mut self, conn: ConnId, _unread: &mut Vec<u8>) -> Option<std::net::TcpStream> {
        // Nothing is read ahead: unread bytes stay in the socket for the new owner.
        let slot = self.slots.get_mut(conn.slot as usize)?;
        if slot.generation != conn.generation {
            return None;
        }
        let mut stream = slot.stream.take()?;
        let _ = self.poll.registry().deregister(&mut stream);
        Some(stream.into())
    }

    fn adopt(&mut self, conn: ConnId, stream: std::net::TcpStream) -> io::Result<()> {
        stream.set_nonblocking(true)?;
        self.register(conn, TcpStream::from_std(stream))?;
        // Bytes may have arrived before the registration: read once to be sure.
        self.ready.push(conn);
        Ok(())
    }

    fn resume_read(&mut self, conn: ConnId) {
        self.ready.push(conn);
    }

    fn stop_accepting(&mut self) {
        if let Some(mut listener) = self.listener.take() {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.accept_backoff_until = None;
    }
}
