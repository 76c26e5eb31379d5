//! TLS (rustls, TLS 1.3 and 1.2) as a layer over any `Driver`: `Tls<D>` is itself a
//! `Driver`, and wraps the worker's `Sink` for the length of each turn, so neither the
//! backend below nor the worker above knows that the bytes were encrypted.
//!
//! - Reads: the inner driver lends ciphertext to `data`; it is fed to the connection's
//!   rustls session and the plaintext is lent to the worker from one per-worker buffer.
//!   Ciphertext the session cannot take while the worker has paused reading is kept
//!   (`unread`, at most what one turn read) and fed on `resume_read`.
//! - Writes: `write` encrypts as much plaintext as rustls takes (its buffer limit,
//!   `BUFFER_LIMIT`) and offers the records to the inner driver; records the kernel
//!   refuses wait in `pending` (so at most about one buffer per connection) and go out on
//!   the next writable event; until then `write` takes nothing. Handshake records are
//!   written after the turn that produced them.
//! - `shutdown_write` sends close_notify, and the TCP FIN only once every record is out.
//! - Handover between workers (Engine.IO sid routing): `detach` parks the session under
//!   the socket's descriptor in `Shared`, and the adopting worker takes it from there.
//! - A refused connection is closed without an answer: a 503 would need a TLS handshake,
//!   that is, per-connection state for a client the server does not want.
//!
//! Certificates: `Shared::load` reads a PEM chain and key; `Shared::reload` (SIGHUP)
//! swaps the config that new connections get; connections already open keep theirs.
//!
//! Cost: a session holds rustls' state and buffers, about 8 KB per idle connection
//! (scripts/bench-tls-idle.sh) against under 200 B without TLS; see docs/production.md.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use bytes::Bytes;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection};

use super::conn_id::ConnId;
use super::driver::{Driver, Sink};

/// Plaintext and records rustls buffers per connection at most.
const BUFFER_LIMIT: usize = 64 << 10;
/// The per-worker buffer plaintext is lent from.
const PLAIN_BYTES: usize = 64 << 10;

/// What every worker's TLS layer shares: the current config and parked sessions.
pub struct Shared {
    config: RwLock<Arc<ServerConfig>>,
    parked: Mutex<HashMap<RawFd, Session>>,
    cert: PathBuf,
    key: PathBuf,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

impl Shared {
    /// Reads `cert` (PEM, leaf first) and `key` (PEM, PKCS#8, PKCS#1 or SEC1).
    pub fn load(cert: &Path, key: &Path) -> Result<Arc<Shared>, String> {
        Ok(Arc::new(Shared {
            config: RwLock::new(server_config(cert, key)?),
            parked: Mutex::new(HashMap::new()),
            cert: cert.to_owned(),
            key: key.to_owned(),
        }))
    }

    /// Reads the files again; new connections get the new certificate. On error the
    /// old one stays.
    pub fn reload(&self) -> Result<(), String> {
        let fresh = server_config(&self.cert, &self.key)?;
        match self.config.write() {
            Ok(mut config) => *config = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(())
    }

    fn current(&self) -> Arc<ServerConfig> {
        match self.config.read() {
            Ok(config) => Arc::clone(&config),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn park(&self, fd: RawFd, session: Session) {
        if let Ok(mut parked) = self.parked.lock() {
            parked.insert(fd, session);
        }
    }

    fn unpark(&self, fd: RawFd) -> Option<Session> {
        self.parked.lock().ok()?.remove(&fd)
    }
}

fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, String> {
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "cannot read a certificate chain from {}: {e}",
                cert.display()
            )
        })?;
    if certs.is_empty() {
        return Err(format!("no certificate in {}", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read a private key from {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS versions: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("certificate and key do not go together: {e}"))?;
    Ok(Arc::new(config))
}

/// One connection's TLS state.
struct Session {
    generation: u32,
    tls: Box<ServerConnection>,
    /// Records the kernel has not taken yet.
    pending: Vec<u8>,
    /// Ciphertext read while the worker had paused reading.
    unread: Vec<u8>,
    /// The worker stopped reading: plaintext waits in the session.
    paused: bool,
    /// The worker asked for FIN: sent once `pending` is empty.
    shut_wanted: bool,
    /// A writable event came while records were pending: tell the worker once they are out.
    owe_writable: bool,
}

/// `D` with TLS on every connection.
pub struct Tls<D: Driver> {
    inner: D,
    shared: Arc<Shared>,
    sessions: Vec<Option<Session>>,
    plain: Box<[u8]>,
    /// Connections with records to write after the turn.
    flush: Vec<ConnId>,
    /// Connections resumed with plaintext or ciphertext waiting in their session.
    resumed: Vec<ConnId>,
}

impl<D: Driver> Tls<D> {
    pub fn new(inner: D, shared: Arc<Shared>) -> Tls<D> {
        Tls {
            inner,
            shared,
            sessions: Vec::new(),
            plain: vec![0u8; PLAIN_BYTES].into_boxed_slice(),
            flush: Vec::new(),
            resumed: Vec::new(),
        }
    }

    /// Offers `id`'s pending records; FIN once all are out if asked. `true`: all out.
    fn flush_one(&mut self, id: ConnId) -> bool {
        let Some(session) = session_mut(&mut self.sessions, id) else {
            return true;
        };
        while session.tls.wants_write() && session.pending.len() < BUFFER_LIMIT {
            if session.tls.write_tls(&mut session.pending).is_err() {
                break;
            }
        }
        if !session.pending.is_empty() {
            let records = Bytes::from(std::mem::take(&mut session.pending));
            match self.inner.write(id, std::slice::from_ref(&records)) {
                Ok(n) => session.pending = records[n..].to_vec(),
                Err(_) => return true, // broken: the worker hears of it on the next read
            }
        }
        let done = session.pending.is_empty() && !session.tls.wants_write();
        if done && session.shut_wanted {
            session.shut_wanted = false;
            self.inner.shutdown_write(id);
        }
        done
    }

    /// After a turn: write what the turn's handshakes and writable events call for.
    fn flush_all(&mut self, sink: &mut impl Sink) {
        let ids = std::mem::take(&mut self.flush);
        for &id in &ids {
            if self.flush_one(id)
                && let Some(session) = session_mut(&mut self.sessions, id)
                && std::mem::take(&mut session.owe_writable)
            {
                sink.writable(id);
            }
        }
        self.flush = ids;
        self.flush.clear();
    }
}

fn session_mut(sessions: &mut [Option<Session>], id: ConnId) -> Option<&mut Session> {
    sessions
        .get_mut(id.slot as usize)?
        .as_mut()
        .filter(|s| s.generation == id.generation)
}

/// The worker's sink as the inner driver sees it during a turn.
struct TlsSink<'a, S: Sink> {
    sink: &'a mut S,
    shared: &'a Shared,
    sessions: &'a mut Vec<Option<Session>>,
    plain: &'a mut [u8],
    flush: &'a mut Vec<ConnId>,
}

impl<S: Sink> TlsSink<'_, S> {
    /// Feeds `input` (and what was kept) to `id`'s session and lends the plaintext to
    /// the worker. `false`: stop reading (paused, closed or failed).
    fn pump(&mut self, id: ConnId, mut input: &[u8]) -> bool {
        let Some(session) = session_mut(self.sessions, id) else {
            self.sink.hangup(id);
            return false;
        };
        loop {
            // Plaintext already decrypted first.
            loop {
                match session.tls.reader().read(self.plain) {
                    Ok(0) => {
                        // close_notify: the peer is done.
                        self.sink.hangup(id);
                        return false;
                    }
                    Ok(n) => {
                        if !self.sink.data(id, &mut self.plain[..n]) {
                            session.paused = true;
                            session.unread.extend_from_slice(input);
                            return false;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        self.sink.hangup(id);
                        return false;
                    }
                }
            }
            // Then more ciphertext: what was kept, then this read's.
            let fed = if session.unread.is_empty() {
                if input.is_empty() {
                    break;
                }
                session.tls.read_tls(&mut input)
            } else {
                let mut kept: &[u8] = &session.unread;
                let before = kept.len();
                let fed = session.tls.read_tls(&mut kept);
                let used = before - kept.len();
                session.unread.drain(..used);
                fed
            };
            let failed = match fed {
                Ok(_) => session
                    .tls
                    .process_new_packets()
                    .err()
                    .map(|e| e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(why) = failed {
                tracing::debug!(conn = id.slot, %why, "TLS failed");
                // Any alert rustls queued goes out after the turn, then the close.
                self.flush.push(id);
                self.sink.hangup(id);
                return false;
            }
        }
        if session.tls.wants_write() {
            self.flush.push(id);
        }
        true
    }
}

impl<S: Sink> Sink for TlsSink<'_, S> {
    fn accepted(&mut self, peer: SocketAddr) -> Option<ConnId> {
        let id = self.sink.accepted(peer)?;
        let session = match ServerConnection::new(self.shared.current()) {
            Ok(mut tls) => {
                tls.set_buffer_limit(Some(BUFFER_LIMIT));
                Some(Session {
                    generation: id.generation,
                    tls: Box::new(tls),
                    pending: Vec::new(),
                    unread: Vec::new(),
                    paused: false,
                    shut_wanted: false,
                    owe_writable: false,
                })
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a TLS session");
                None
            }
        };
        let slot = id.slot as usize;
        if self.sessions.len() <= slot {
            self.sessions.resize_with(slot + 1, || None);
        }
        self.sessions[slot] = session;
        Some(id)
    }

    fn refusal(&self) -> &[u8] {
        &[] // see the module doc
    }

    fn data(&mut self, id: ConnId, bytes: &mut [u8]) -> bool {
        self.pump(id, bytes)
    }

    fn writable(&mut self, id: ConnId) {
        match session_mut(self.sessions, id) {
            Some(session) if !session.pending.is_empty() || session.tls.wants_write() => {
                session.owe_writable = true;
                self.flush.push(id);
            }
            _ => self.sink.writable(id),
        }
    }

    fn hangup(&mut self, id: ConnId) {
        self.sink.hangup(id);
    }

    fn woken(&mut self) {
        self.sink.woken();
    }
}

impl<D: Driver> Driver for Tls<D> {
    fn turn(&mut self, timeout: Option<Duration>, sink: &mut impl Sink) -> io::Result<()> {
        let resumed = std::mem::take(&mut self.resumed);
        let timeout = if resumed.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        let mut tls_sink = TlsSink {
            sink,
            shared: &self.shared,
            sessions: &mut self.sessions,
            plain: &mut self.plain,
            flush: &mut self.flush,
        };
        for &id in &resumed {
            if session_mut(tls_sink.sessions, id).is_some_and(|s| !s.paused) {
                tls_sink.pump(id, &[]);
            }
        }
        let result = self.inner.turn(timeout, &mut tls_sink);
        self.flush_all(sink);
        result
    }

    fn write(&mut self, conn: ConnId, bufs: &[Bytes]) -> io::Result<usize> {
        let Some(session) = session_mut(&mut self.sessions, conn) else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        if !session.pending.is_empty() {
            // The kernel is full: nothing more until the records are out.
            if !self.flush_one(conn) {
                return Ok(0);
            }
        }
        // Encrypt a buffer's worth, offer it, again while the kernel takes it all: a
        // short count must mean the kernel is full (a writable event will come), never
        // only that rustls' buffer was.
        let mut taken = 0;
        let mut at = (0, 0); // (buffer, offset)
        loop {
            let Some(session) = session_mut(&mut self.sessions, conn) else {
                return Err(io::ErrorKind::NotConnected.into());
            };
            let before = taken;
            while let Some(buf) = bufs.get(at.0) {
                let n = session.tls.writer().write(&buf[at.1..])?;
                taken += n;
                at.1 += n;
                if at.1 < buf.len() {
                    break; // rustls' buffer is full
                }
                at = (at.0 + 1, 0);
            }
            let all_out = self.flush_one(conn);
            if !all_out || at.0 >= bufs.len() || taken == before {
                return Ok(taken);
            }
        }
    }

    fn shutdown_write(&mut self, conn: ConnId) {
        if let Some(session) = session_mut(&mut self.sessions, conn) {
            session.tls.send_close_notify();
            session.shut_wanted = true;
            self.flush_one(conn);
        } else {
            self.inner.shutdown_write(conn);
        }
    }

    fn close(&mut self, conn: ConnId) {
        if session_mut(&mut self.sessions, conn).is_some() {
            self.sessions[conn.slot as usize] = None;
        }
        self.inner.close(conn);
    }

    fn resume_read(&mut self, conn: ConnId) {
        if let Some(session) = session_mut(&mut self.sessions, conn)
            && std::mem::take(&mut session.paused)
        {
            self.resumed.push(conn);
        }
        self.inner.resume_read(conn);
    }

    fn detach(&mut self, conn: ConnId, unread: &mut Vec<u8>) -> Option<std::net::TcpStream> {
        let session = self
            .sessions
            .get_mut(conn.slot as usize)
            .and_then(|s| s.take_if(|s| s.generation == conn.generation));
        // What the inner driver read ahead is ciphertext: it travels in the session,
        // as does plaintext the worker has not seen.
        let mut ahead = Vec::new();
        let stream = self.inner.detach(conn, &mut ahead)?;
        match session {
            Some(mut session) => {
                session.unread.extend_from_slice(&ahead);
                self.shared.park(stream.as_raw_fd(), session);
            }
            None => unread.extend_from_slice(&ahead),
        }
        Some(stream)
    }

    fn adopt(&mut self, conn: ConnId, stream: std::net::TcpStream) -> io::Result<()> {
        let Some(mut session) = self.shared.unpark(stream.as_raw_fd()) else {
            return Err(io::Error::other(
                "a TLS connection arrived without its session",
            ));
        };
        self.inner.adopt(conn, stream)?;
        session.generation = conn.generation;
        let slot = conn.slot as usize;
        if self.sessions.len() <= slot {
            self.sessions.resize_with(slot + 1, || None);
        }
        let unread = !session.unread.is_empty() || session.paused;
        session.paused = false;
        self.sessions[slot] = Some(session);
        if unread {
            self.resumed.push(conn);
        }
        self.flush_one(conn);
        Ok(())
    }

    fn stop_accepting(&mut self) {
        self.inner.stop_accepting();
    }
}
