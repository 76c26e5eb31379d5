//! Benchmark peer for Throng: a WebSocket echo server on tokio + tokio-tungstenite.
//! `--port P` (127.0.0.1), `--threads N` runtime worker threads (default 1).
//! Fair to the peer: each connection echoes every message that is already readable, then
//! flushes once (feed + flush), so pipelined messages leave in one write.

use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::tungstenite::Message;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

async fn serve(stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let Ok(mut ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    while let Some(Ok(first)) = ws.next().await {
        let mut msg = Some(first);
        while let Some(m) = msg.take() {
            if (m.is_text() || m.is_binary()) && ws.feed(m).await.is_err() {
                return;
            }
            match ws.next().now_or_never() {
                Some(Some(Ok(next))) => msg = Some(next),
                Some(_) => return,
                None => {}
            }
        }
        if ws.flush().await.is_err() {
            return;
        }
    }
}

fn main() {
    let port = arg("--port", 9002) as u16;
    let threads = arg("--threads", 1).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
        eprintln!("tokio-tungstenite echo listening on 127.0.0.1:{port} ({threads} threads)");
        loop {
            if let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream));
            }
        }
    });
}
