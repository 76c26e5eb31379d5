//! Interop with an independent WebSocket implementation: node's `ws` client (npm) echoes
//! text and binary messages through `throng serve --app echo`.

mod util;

use std::path::Path;
use std::process::Command;

use util::Server;

#[test]
fn node_ws_client_echoes_text_and_binary() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node");
    assert!(
        dir.join("node_modules/ws").is_dir(),
        "node's ws package is missing: run `npm ci --prefix tests/node` (scripts/test.sh does)"
    );
    let s = Server::start(&[]);
    let out = Command::new("node")
        .arg(dir.join("ws_interop.js"))
        .arg(s.url())
        .output()
        .expect("node must be installed (scripts/setup-test-deps.sh installs it)");
    assert!(
        out.status.success(),
        "ws interop failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
