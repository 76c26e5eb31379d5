//! Benchmark peer for Throng: a websocket-shootout server on tokio + tokio-tungstenite.
//!
//! Usage: `tokio-tungstenite-shootout --port P [--threads N] [--read-buffer BYTES]
//!         [--runtime multi|current]`
//! - listens on 127.0.0.1:P only (backlog 4096, or the kernel's somaxconn if lower);
//! - `--threads` (or `TT_SHOOTOUT_THREADS`): tokio worker threads, default 1;
//! - `--runtime` (or `TT_SHOOTOUT_RUNTIME`): `multi` (default: the multi-thread runtime with
//!   `--threads` workers, the accept loop spawned on them too) or `current` (tokio's
//!   current-thread runtime, on the main thread; only with `--threads 1`). Measured with
//!   `throng bench broadcast` (1 core each): `current` reached the 100 ms p95 round trip at
//!   ~7,000 clients where `multi` held 19,000 at ~15 ms, because with `multi` the sender's
//!   writer, woken last, runs next (tokio's LIFO slot) instead of after every recipient's;
//! - `--read-buffer` (or `TT_SHOOTOUT_READ_BUFFER`): tungstenite's per-connection read
//!   buffer, default 4 KiB here. Tungstenite's own default (128 KiB) is zero-filled up to
//!   its size on every read call and stays resident for every connection: at 19,000
//!   connections 2.5-2.8 GB RSS against ~0.8 GB, and a slightly slower broadcast round
//!   trip, for no gain with the small messages of this protocol;
//! - raises its soft RLIMIT_NOFILE to the hard limit at start, to hold ~19,000 connections.
//!
//! Protocol (text frames of JSON; only `type` is parsed, `payload` is forwarded as the raw
//! bytes it arrived as, never re-serialized):
//! - `{"type":"echo","payload":X}`: the very same frame back to the sender (no copy);
//! - `{"type":"broadcast","payload":X}`: `{"type":"broadcast","payload":X}` to every connected
//!   client, the sender included, then `{"type":"broadcastResult","payload":X}` to the sender;
//! - anything else (other types, bad JSON, binary frames): ignored.
//!
//! The `broadcastResult` is queued once the broadcast is in every recipient's queue, as in the
//! original websocket-shootout servers: it may leave before the recipients' copies are
//! written (each connection's own frames stay in order). Queues are unbounded: there is no
//! slow-consumer policy, a client that stops reading makes its queue grow.
//!
//! Made to be a fair competitor:
//! - each connection has a writer task owning the sink half, fed by an unbounded channel; it
//!   takes everything already queued (`try_recv`), `feed`s each frame into tungstenite's
//!   write buffer, then flushes once, so a burst of frames goes out in one `write`;
//! - a broadcast frame is built once (`Utf8Bytes`, i.e. `Bytes`), each recipient gets a
//!   reference-counted clone of it;
//! - the registry of connections is a `RwLock<Slab<Sender>>`: broadcasting takes the read
//!   lock (connects and disconnects take the write lock), walks a dense vector and pushes
//!   one clone into each channel.
//!
//! Pings are answered and closes completed by tungstenite itself (queued replies go out on
//! the next read or flush).

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::value::RawValue;
use slab::Slab;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// `--name VALUE` from the command line, else the environment variable `env`.
fn setting_str(name: &str, env: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    match args.iter().position(|a| a == name) {
        Some(i) => match args.get(i + 1) {
            Some(v) => Some(v.clone()),
            None => {
                eprintln!("{name}: missing value");
                std::process::exit(2);
            }
        },
        None => std::env::var(env).ok(),
    }
}

fn setting(name: &str, env: &str) -> Option<usize> {
    let value = setting_str(name, env)?;
    match value.parse() {
        Ok(n) => Some(n),
        Err(_) => {
            eprintln!("{name}: not a number: {value:?}");
            std::process::exit(2);
        }
    }
}

/// Most frames fed between two flushes (a flush is forced anyway whenever tungstenite's
/// write buffer passes its 128 KiB `write_buffer_size`).
const BATCH: usize = 1024;

/// Every connection's outgoing queue, for broadcasts.
type Registry = RwLock<Slab<UnboundedSender<Message>>>;

/// The one field parsed; `payload` stays the raw JSON text it was in the frame.
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow, default)]
    payload: Option<&'a RawValue>,
}

/// `{"type":"<kind>","payload":<payload>}` as one shareable text frame.
fn frame(kind: &str, payload: &str) -> Utf8Bytes {
    let mut s = String::with_capacity(24 + kind.len() + payload.len());
    s.push_str(r#"{"type":""#);
    s.push_str(kind);
    s.push_str(r#"","payload":"#);
    s.push_str(payload);
    s.push('}');
    Utf8Bytes::from(s)
}

/// Acts on one text frame from a client whose outgoing queue is `me`.
fn on_text(text: Utf8Bytes, me: &UnboundedSender<Message>, registry: &Registry) {
    let Ok(msg) = serde_json::from_str::<Incoming>(text.as_str()) else {
        return;
    };
    match &*msg.kind {
        "echo" => {
            drop(msg);
            let _ = me.send(Message::Text(text));
        }
        "broadcast" => {
            let payload = msg.payload.map_or("null", RawValue::get);
            let out = Message::Text(frame("broadcast", payload));
            {
                let conns = registry.read().unwrap_or_else(|e| e.into_inner());
                for (_, tx) in conns.iter() {
                    // A closed queue is a connection on its way out: nothing to do.
                    let _ = tx.send(out.clone());
                }
            }
            let _ = me.send(Message::Text(frame("broadcastResult", payload)));
        }
        _ => {}
    }
}

async fn serve(stream: TcpStream, config: WebSocketConfig, registry: Arc<Registry>) {
    let _ = stream.set_nodelay(true);
    let Ok(ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = unbounded_channel::<Message>();
    let key = registry
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .insert(tx.clone());

    // Writer: everything queued goes into tungstenite's buffer, then one flush (one write).
    let writer = tokio::spawn(async move {
        'frames: while let Some(first) = rx.recv().await {
            if sink.feed(first).await.is_err() {
                break;
            }
            for _ in 1..BATCH {
                match rx.try_recv() {
                    Ok(next) => {
                        if sink.feed(next).await.is_err() {
                            break 'frames;
                        }
                    }
                    Err(_) => break,
                }
            }
            if sink.flush().await.is_err() {
                break;
            }
        }
        // The reader side has ended (or the socket failed): nothing more to send.
        drop(rx);
    });

    // Reader: until the stream ends. A close frame from the client is answered by
    // tungstenite on the next read, which then reports the end.
    while let Some(Ok(msg)) = source.next().await {
        if let Message::Text(text) = msg {
            on_text(text, &tx, &registry);
        }
    }
    registry
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .remove(key);
    drop(tx);
    let _ = writer.await;
}

/// Soft RLIMIT_NOFILE up to the hard limit; returns the new soft limit.
fn raise_fd_limit() -> u64 {
    // SAFETY: plain libc calls on a local struct.
    unsafe {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
        lim.rlim_cur
    }
}

async fn accept_loop(port: u16, config: WebSocketConfig, banner: String) {
    let socket = TcpSocket::new_v4().expect("socket");
    socket.set_reuseaddr(true).expect("SO_REUSEADDR");
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .expect("bind 127.0.0.1");
    let listener: TcpListener = socket.listen(4096).expect("listen");
    eprintln!("{banner}");
    let registry: Arc<Registry> = Arc::new(RwLock::new(Slab::with_capacity(1024)));
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(serve(stream, config, registry.clone()));
            }
            // Out of file descriptors and the like: back off instead of spinning.
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
        }
    }
}

fn main() {
    let Some(port) = setting("--port", "TT_SHOOTOUT_PORT") else {
        eprintln!(
            "usage: tokio-tungstenite-shootout --port P [--threads N] [--read-buffer BYTES] \
             [--runtime multi|current]"
        );
        std::process::exit(2);
    };
    let threads = setting("--threads", "TT_SHOOTOUT_THREADS")
        .unwrap_or(1)
        .max(1);
    let runtime = setting_str("--runtime", "TT_SHOOTOUT_RUNTIME").unwrap_or("multi".into());
    let read_buffer = setting("--read-buffer", "TT_SHOOTOUT_READ_BUFFER").unwrap_or(4096);
    let config = WebSocketConfig::default()
        .max_message_size(Some(16 << 20))
        .read_buffer_size(read_buffer.max(1));
    let nofile = raise_fd_limit();
    let banner = format!(
        "tokio-tungstenite shootout listening on 127.0.0.1:{port} ({runtime} runtime, {threads} \
         worker threads, read buffer {} B, open-file limit {nofile})",
        config.read_buffer_size
    );
    match runtime.as_str() {
        "multi" => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(threads)
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(async move {
                // On a worker, so that everything runs on the `--threads` workers.
                if tokio::spawn(accept_loop(port as u16, config, banner))
                    .await
                    .is_err()
                {
                    std::process::exit(1); // the panic (bind, listen) is printed already
                }
            });
        }
        "current" => {
            if threads != 1 {
                eprintln!("--runtime current runs one thread: use --threads 1");
                std::process::exit(2);
            }
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            rt.block_on(accept_loop(port as u16, config, banner));
        }
        other => {
            eprintln!("--runtime: multi or current, not {other:?}");
            std::process::exit(2);
        }
    }
}
