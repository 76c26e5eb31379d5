//! Benchmark peer for Throng: a WebSocket echo server on tokio + tokio-tungstenite.
//!
//! Usage: `tokio-tungstenite-echo --port P [--threads N] [--read-buffer BYTES]`
//! - listens on 127.0.0.1:P only;
//! - `--threads` (or `TT_ECHO_THREADS`): worker threads of the multi-thread runtime, default 1;
//! - `--read-buffer` (or `TT_ECHO_READ_BUFFER`): tungstenite's per-connection read buffer,
//!   default tungstenite's own (128 KiB, allocated and zero-filled on the first read, so it
//!   counts in the RSS of every idle connection).
//!
//! Fair to the peer: each connection echoes every message that is already readable with
//! `SinkExt::feed` (buffered, no write yet), then flushes once, so pipelined messages leave
//! in one write, as Throng's corked writes do. Pings are answered and closes completed by
//! tungstenite itself on that flush.

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// `--name VALUE` from the command line, else the environment variable `env`.
fn setting(name: &str, env: &str) -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    let value = match args.iter().position(|a| a == name) {
        Some(i) => args.get(i + 1).cloned(),
        None => std::env::var(env).ok(),
    }?;
    match value.parse() {
        Ok(n) => Some(n),
        Err(_) => {
            eprintln!("{name}: not a number: {value:?}");
            std::process::exit(2);
        }
    }
}

/// Most messages echoed between two flushes.
const BATCH: usize = 64;

async fn serve(stream: TcpStream, config: WebSocketConfig) {
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async_with_config(stream, Some(config)).await else {
        return;
    };
    while let Some(Ok(first)) = ws.next().await {
        let mut next = Some(first);
        // Echo what is already decoded or readable without waiting (at most BATCH
        // messages, so a flooding client cannot delay its own replies forever), then
        // flush once.
        let mut batch = 0;
        while let Some(msg) = next.take() {
            if matches!(msg, Message::Text(_) | Message::Binary(_)) && ws.feed(msg).await.is_err() {
                return;
            }
            batch += 1;
            if batch == BATCH {
                break;
            }
            match ws.next().now_or_never() {
                Some(Some(Ok(msg))) => next = Some(msg),
                Some(_) => return, // closed or failed
                None => {}         // nothing more readable now
            }
        }
        if ws.flush().await.is_err() {
            return;
        }
    }
}

fn main() {
    let Some(port) = setting("--port", "TT_ECHO_PORT") else {
        eprintln!("usage: tokio-tungstenite-echo --port P [--threads N] [--read-buffer BYTES]");
        std::process::exit(2);
    };
    let threads = setting("--threads", "TT_ECHO_THREADS").unwrap_or(1).max(1);
    let mut config = WebSocketConfig::default().max_message_size(Some(16 << 20));
    if let Some(bytes) = setting("--read-buffer", "TT_ECHO_READ_BUFFER") {
        config = config.read_buffer_size(bytes);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port as u16))
            .await
            .expect("bind 127.0.0.1");
        eprintln!(
            "tokio-tungstenite echo listening on 127.0.0.1:{port} ({threads} worker threads, \
             read buffer {} B)",
            config.read_buffer_size
        );
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(serve(stream, config));
                }
                // Out of file descriptors and the like: back off instead of spinning.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            }
        }
    });
}
