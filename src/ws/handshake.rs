//! The opening handshake (RFC 6455 §4.2): checks an upgrade request and writes the 101
//! response into a stack buffer. `Sec-WebSocket-Accept` is SHA-1 + base64 with no heap.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha1::{Digest, Sha1};

use crate::http::request::{Request, has_token};
use crate::http::response::Reject;

const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// The 101 response, built on the stack.
pub struct Accepted {
    bytes: [u8; 160],
    len: usize,
}

impl Accepted {
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

/// Checks `req` as a WebSocket upgrade and builds the 101 response.
///
/// 400 for a malformed upgrade (not GET, not HTTP/1.1, no Host, no or bad key, an Upgrade
/// other than websocket, no `Connection: upgrade`); 426 + `Upgrade: websocket` when there is
/// no Upgrade header at all; 426 + `Sec-WebSocket-Version: 13` for another version.
/// No extension or subprotocol is ever selected.
pub fn accept(req: &Request<'_>) -> Result<Accepted, Reject> {
    if req.method != "GET" {
        return Err(Reject::BadRequest("method must be GET"));
    }
    if req.minor_version != 1 {
        return Err(Reject::BadRequest("HTTP/1.1 required"));
    }
    if req.host.is_none() {
        return Err(Reject::BadRequest("missing Host"));
    }
    let Some(upgrade) = req.upgrade else {
        return Err(Reject::UpgradeRequired);
    };
    if !has_token(upgrade, "websocket") {
        return Err(Reject::BadRequest("Upgrade must be websocket"));
    }
    if !req.connection.is_some_and(|c| has_token(c, "upgrade")) {
        return Err(Reject::BadRequest("Connection must include Upgrade"));
    }
    match req.sec_websocket_version {
        None => return Err(Reject::BadRequest("missing Sec-WebSocket-Version")),
        Some(v) if v.trim_ascii() != b"13" => return Err(Reject::UnsupportedVersion),
        Some(_) => {}
    }
    let key = req
        .sec_websocket_key
        .map(<[u8]>::trim_ascii)
        .filter(|k| key_is_valid(k))
        .ok_or(Reject::BadRequest("missing or invalid Sec-WebSocket-Key"))?;
    Ok(response_101(&accept_key(key)))
}

/// A key must be base64 of exactly 16 bytes (24 characters with `==` padding).
fn key_is_valid(key: &[u8]) -> bool {
    let mut out = [0u8; 18];
    key.len() == 24 && STANDARD.decode_slice(key, &mut out) == Ok(16)
}

/// `base64(sha1(key ++ GUID))`, 28 ASCII bytes.
pub fn accept_key(key: &[u8]) -> [u8; 28] {
    let mut sha = Sha1::new();
    sha.update(key);
    sha.update(GUID);
    let digest = sha.finalize();
    let mut out = [0u8; 28];
    // 20 bytes always encode to exactly 28 characters.
    let _ = STANDARD.encode_slice(digest, &mut out);
    out
}

fn response_101(accept: &[u8; 28]) -> Accepted {
    const HEAD: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Accept: ";
    let mut bytes = [0u8; 160];
    let mut len = 0;
    for part in [HEAD, accept.as_slice(), b"\r\n\r\n"] {
        bytes[len..len + part.len()].copy_from_slice(part);
        len += part.len();
    }
    Accepted { bytes, len }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(text: &str) -> Result<Accepted, Reject> {
        let r = Request::parse(text.as_bytes(), 8192).unwrap().unwrap();
        accept(&r)
    }

    const OK: &str = "GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";

    #[test]
    fn rfc_example_accept_key() {
        assert_eq!(
            &accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        let resp = req(OK).ok().unwrap();
        let text = std::str::from_utf8(resp.as_bytes()).unwrap();
        assert!(text.starts_with("HTTP/1.1 101 "));
        assert!(text.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"));
    }

    #[test]
    fn each_malformed_upgrade_gets_its_status() {
        let cases: [(&str, &str, u16); 9] = [
            ("GET / ", "POST / ", 400),
            ("HTTP/1.1\r\n", "HTTP/1.0\r\n", 400),
            ("Host: h\r\n", "", 400),
            ("Upgrade: websocket\r\n", "", 426),
            ("Upgrade: websocket\r\n", "Upgrade: h2c\r\n", 400),
            ("Connection: Upgrade\r\n", "Connection: close\r\n", 400),
            ("dGhlIHNhbXBsZSBub25jZQ==", "AQIDBAUGBwg=", 400),
            (
                "Sec-WebSocket-Version: 13\r\n",
                "Sec-WebSocket-Version: 12\r\n",
                426,
            ),
            ("Sec-WebSocket-Version: 13\r\n", "", 400),
        ];
        for (from, to, status) in cases {
            let text = OK.replacen(from, to, 1);
            let got = req(&text).err().map(Reject::status);
            assert_eq!(got, Some(status), "{from:?} -> {to:?}");
        }
    }

    #[test]
    fn tokens_and_key_whitespace_are_tolerated() {
        let text = OK
            .replace("Upgrade: websocket", "Upgrade: WebSocket")
            .replace("Connection: Upgrade", "Connection: keep-alive, Upgrade");
        assert!(req(&text).is_ok());
    }
}
