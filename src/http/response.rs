//! Responses the server writes: refusals with the status the protocol names, each a
//! `Reject` that knows its status line and extra headers.

use std::io::Write;

/// Why a request is refused. Every refusal closes the connection after the response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reject {
    /// 400, with a short reason in the body.
    BadRequest(&'static str),
    /// 404: the app serves nothing at this path.
    NotFound,
    /// 408: the head did not arrive within the handshake timeout.
    Timeout,
    /// 426 with `Upgrade: websocket`: a plain HTTP request to a WebSocket endpoint.
    UpgradeRequired,
    /// 426 with `Sec-WebSocket-Version: 13`: another WebSocket version was asked for.
    UnsupportedVersion,
    /// 431: the head exceeds the configured size or header count.
    HeadersTooLarge,
}

impl Reject {
    pub fn status(self) -> u16 {
        match self {
            Reject::BadRequest(_) => 400,
            Reject::NotFound => 404,
            Reject::Timeout => 408,
            Reject::UpgradeRequired | Reject::UnsupportedVersion => 426,
            Reject::HeadersTooLarge => 431,
        }
    }

    fn reason_phrase(self) -> &'static str {
        match self {
            Reject::BadRequest(_) => "Bad Request",
            Reject::NotFound => "Not Found",
            Reject::Timeout => "Request Timeout",
            Reject::UpgradeRequired | Reject::UnsupportedVersion => "Upgrade Required",
            Reject::HeadersTooLarge => "Request Header Fields Too Large",
        }
    }

    /// The body text, also used in logs.
    pub fn detail(self) -> &'static str {
        match self {
            Reject::BadRequest(why) => why,
            Reject::NotFound => "no WebSocket endpoint at this path",
            Reject::Timeout => "request head not received in time",
            Reject::UpgradeRequired => "this is a WebSocket endpoint",
            Reject::UnsupportedVersion => "only WebSocket version 13 is supported",
            Reject::HeadersTooLarge => "request head too large",
        }
    }

    /// Writes the whole response (head and body).
    pub fn write_to(self, out: &mut Vec<u8>) {
        let body = self.detail();
        let extra = match self {
            Reject::UpgradeRequired => "Upgrade: websocket\r\n",
            Reject::UnsupportedVersion => "Sec-WebSocket-Version: 13\r\n",
            _ => "",
        };
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "HTTP/1.1 {} {}\r\n{extra}Connection: close\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\n\r\n{body}\n",
            self.status(),
            self.reason_phrase(),
            body.len() + 1,
        );
    }
}

/// A complete answer an app gives to a request it refuses (e.g. Engine.IO's JSON errors).
/// Written with `Connection: close`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn write_to(&self, out: &mut Vec<u8>) {
        write_response(out, self.status, self.content_type, b"", &self.body, true);
    }
}

/// The reason phrase of the statuses this server sends.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Payload Too Large",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Writes a whole response: `extra` is header lines, each ending in CRLF; `close` adds
/// `Connection: close` (else the connection is kept alive for the next request).
pub fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    content_type: &str,
    extra: &[u8],
    body: &[u8],
    close: bool,
) {
    let connection = if close {
        "Connection: close\r\n"
    } else {
        "Connection: keep-alive\r\n"
    };
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\n{connection}",
        reason_phrase(status)
    );
    out.extend_from_slice(extra);
    if !content_type.is_empty() {
        let _ = write!(out, "Content-Type: {content_type}\r\n");
    }
    let _ = write!(out, "Content-Length: {}\r\n\r\n", body.len());
    out.extend_from_slice(body);
}

/// Writes a `200 OK` with `body` and `Connection: close` (e.g. `/metrics`).
pub fn write_ok(out: &mut Vec<u8>, content_type: &str, body: &[u8]) {
    // Writing into a Vec cannot fail.
    let _ = write!(
        out,
        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\n\r\n",
        body.len()
    );
    out.extend_from_slice(body);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_refusal_names_the_supported_version() {
        let mut out = Vec::new();
        Reject::UnsupportedVersion.write_to(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("HTTP/1.1 426 Upgrade Required\r\n"));
        assert!(text.contains("\r\nSec-WebSocket-Version: 13\r\n"));
        let body = text.split("\r\n\r\n").nth(1).unwrap();
        let declared: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(body.len(), declared);
    }

    #[test]
    fn answers_carry_status_type_and_length() {
        let mut out = Vec::new();
        Answer {
            status: 403,
            content_type: "application/json",
            body: br#"{"code":4}"#.to_vec(),
        }
        .write_to(&mut out);
        assert_eq!(
            out,
            b"HTTP/1.1 403 Forbidden\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 10\r\n\r\n{\"code\":4}"
        );
    }
}
