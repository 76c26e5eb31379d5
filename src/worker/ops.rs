//! The operator's endpoints, answered on every listener before the app sees a request
//! (and on the admin listener, `--admin-port`):
//! - `GET /metrics`: Prometheus text of every worker and the bridge;
//! - `GET /healthz`: `200 ok` whenever the process answers at all (liveness);
//! - `GET /readyz`: `200 ready`, or `503 not ready: <why>` while the server drains or a
//!   condition it was given fails (the Redis link in `--ready-requires-redis` mode).
//!
//! Every answer closes its connection. Only a plain request (not an upgrade) at one of
//! these paths is taken; another method gets 400 (405 would need `Allow`, and no client
//! of these paths cares).

use crate::fabric::Fabric;
use crate::http::Reject;
use crate::http::Request;
use crate::http::response::{write_ok, write_response};

/// Where `/metrics` is served (a plain GET, not a WebSocket upgrade).
pub const METRICS_PATH: &str = "/metrics";
/// Liveness.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Readiness.
pub const READYZ_PATH: &str = "/readyz";

/// The whole answer to `req` if it is for an operator's endpoint.
pub fn answer(fabric: &Fabric, req: &Request<'_>) -> Option<Vec<u8>> {
    if req.upgrade.is_some() {
        return None;
    }
    let path = req.path();
    if ![METRICS_PATH, HEALTHZ_PATH, READYZ_PATH].contains(&path) {
        return None;
    }
    let mut resp = Vec::with_capacity(256);
    if req.method != "GET" {
        Reject::BadRequest("use GET").write_to(&mut resp);
        return Some(resp);
    }
    match path {
        METRICS_PATH => {
            let body = fabric.render_metrics();
            resp.reserve(body.len());
            write_ok(&mut resp, "text/plain; version=0.0.4", body.as_bytes());
        }
        HEALTHZ_PATH => write_ok(&mut resp, "text/plain", b"ok\n"),
        _ => match fabric.not_ready() {
            None => write_ok(&mut resp, "text/plain", b"ready\n"),
            Some(why) => {
                let body = format!("not ready: {why}\n");
                write_response(&mut resp, 503, "text/plain", b"", body.as_bytes(), true);
            }
        },
    }
    Some(resp)
}
