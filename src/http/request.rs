//! The request head, parsed with `httparse` straight from the read buffer.
//!
//! Only the fields the server acts on are kept, as slices borrowing the buffer: no
//! allocation per request. The head is bounded in bytes (`max_head`) and in header count
//! (`MAX_HEADERS`); past either the answer is 431.

use super::response::Reject;

/// Headers accepted in one request head; more → 431.
pub const MAX_HEADERS: usize = 48;

/// A parsed request head. Header values are raw bytes (HTTP allows non-UTF-8 values).
#[derive(Debug, Default, Clone, Copy)]
pub struct Request<'a> {
    pub method: &'a str,
    /// Path and query as sent (`/chat?x=1`).
    pub target: &'a str,
    /// The minor version: 1 for HTTP/1.1, 0 for HTTP/1.0.
    pub minor_version: u8,
    pub host: Option<&'a [u8]>,
    pub upgrade: Option<&'a [u8]>,
    pub connection: Option<&'a [u8]>,
    pub sec_websocket_key: Option<&'a [u8]>,
    pub sec_websocket_version: Option<&'a [u8]>,
    pub origin: Option<&'a [u8]>,
    pub content_length: Option<&'a [u8]>,
    pub content_type: Option<&'a [u8]>,
    pub transfer_encoding: Option<&'a [u8]>,
    /// A CORS preflight's `Access-Control-Request-Headers`.
    pub access_control_request_headers: Option<&'a [u8]>,
    /// Bytes the head occupies; what follows it belongs to the next protocol.
    pub head_len: usize,
}

impl<'a> Request<'a> {
    /// Parses a head from the front of `buf`. `Ok(None)`: incomplete, read more (the
    /// caller keeps at most `max_head` bytes).
    pub fn parse(buf: &'a [u8], max_head: usize) -> Result<Option<Request<'a>>, Reject> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        let head_len = match parsed.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                return if buf.len() >= max_head {
                    Err(Reject::HeadersTooLarge)
                } else {
                    Ok(None)
                };
            }
            Err(httparse::Error::TooManyHeaders) => return Err(Reject::HeadersTooLarge),
            Err(httparse::Error::Version) => {
                return Err(Reject::BadRequest("unsupported HTTP version"));
            }
            Err(_) => return Err(Reject::BadRequest("malformed request")),
        };
        if head_len > max_head {
            return Err(Reject::HeadersTooLarge);
        }
        let mut req = Request {
            method: parsed.method.unwrap_or(""),
            target: parsed.path.unwrap_or(""),
            minor_version: parsed.version.unwrap_or(0),
            head_len,
            ..Request::default()
        };
        for h in parsed.headers.iter() {
            let slot = match h.name.len() {
                4 if h.name.eq_ignore_ascii_case("host") => &mut req.host,
                6 if h.name.eq_ignore_ascii_case("origin") => &mut req.origin,
                7 if h.name.eq_ignore_ascii_case("upgrade") => &mut req.upgrade,
                10 if h.name.eq_ignore_ascii_case("connection") => &mut req.connection,
                17 if h.name.eq_ignore_ascii_case("sec-websocket-key") => {
                    &mut req.sec_websocket_key
                }
                21 if h.name.eq_ignore_ascii_case("sec-websocket-version") => {
                    &mut req.sec_websocket_version
                }
                12 if h.name.eq_ignore_ascii_case("content-type") => &mut req.content_type,
                14 if h.name.eq_ignore_ascii_case("content-length") => &mut req.content_length,
                17 if h.name.eq_ignore_ascii_case("transfer-encoding") => {
                    &mut req.transfer_encoding
                }
                30 if h
                    .name
                    .eq_ignore_ascii_case("access-control-request-headers") =>
                {
                    &mut req.access_control_request_headers
                }
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(h.value);
            }
        }
        Ok(Some(req))
    }

    /// Whether the body is sent in chunks (`Transfer-Encoding: chunked`).
    pub fn is_chunked(&self) -> bool {
        self.transfer_encoding
            .is_some_and(|v| has_token(v, "chunked"))
    }

    /// The body's length from `Content-Length`: `Ok(0)` when absent (or chunked), `Err`
    /// when it is not a number, or a transfer coding other than `chunked` is given.
    pub fn body_len(&self) -> Result<usize, Reject> {
        if self.transfer_encoding.is_some() {
            if self.is_chunked() && self.content_length.is_none() {
                return Ok(0);
            }
            return Err(Reject::BadRequest("unsupported Transfer-Encoding"));
        }
        match self.content_length {
            None => Ok(0),
            Some(v) => std::str::from_utf8(v.trim_ascii())
                .ok()
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse().ok())
                .ok_or(Reject::BadRequest("bad Content-Length")),
        }
    }

    /// Whether the client asked to close the connection after this request.
    pub fn wants_close(&self) -> bool {
        match self.connection {
            Some(v) if has_token(v, "close") => true,
            Some(v) if has_token(v, "keep-alive") => false,
            _ => self.minor_version == 0,
        }
    }

    /// The path without the query string.
    pub fn path(&self) -> &'a str {
        self.target.split('?').next().unwrap_or("")
    }
}

/// Chunks one body may have (more: `TooLarge`): bounds the work of each look at a
/// body still arriving, whatever the chunk sizes.
pub const MAX_CHUNKS: usize = 16_384;

/// A chunked body at the front of `buf` (after the head): `Ok(Some((body, used)))` once
/// the last chunk and the trailers are in, `Ok(None)` if more bytes are needed. `Err`
/// when it is malformed, or holds more than `limit` bytes of data or `MAX_CHUNKS`
/// chunks (`TooLarge`: 413). Nothing is copied until the body is complete, so looking
/// again after each read costs a walk over the chunk headers only.
pub fn decode_chunked(buf: &[u8], limit: usize) -> Result<Option<(Vec<u8>, usize)>, ChunkError> {
    let Some((len, used)) = walk_chunks(buf, limit, |_| {})? else {
        return Ok(None);
    };
    let mut body = Vec::with_capacity(len);
    walk_chunks(buf, limit, |data| body.extend_from_slice(data))?;
    Ok(Some((body, used)))
}

/// Walks the chunks at the front of `buf`, giving each one's data to `each`:
/// `Some((body length, bytes used))` when complete.
fn walk_chunks(
    buf: &[u8],
    limit: usize,
    mut each: impl FnMut(&[u8]),
) -> Result<Option<(usize, usize)>, ChunkError> {
    let mut len = 0usize;
    let mut at = 0;
    for _ in 0..=MAX_CHUNKS {
        let (start, size) = match httparse::parse_chunk_size(&buf[at..]) {
            Ok(httparse::Status::Complete((n, size))) => (at + n, size),
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(ChunkError::Malformed),
        };
        let size = usize::try_from(size).map_err(|_| ChunkError::TooLarge)?;
        if len.saturating_add(size) > limit {
            return Err(ChunkError::TooLarge);
        }
        if size == 0 {
            // Trailers (ignored), up to the empty line.
            let mut line = start;
            loop {
                let Some(end) = buf[line..].windows(2).position(|w| w == b"\r\n") else {
                    return if buf.len() - start > 8 << 10 {
                        Err(ChunkError::Malformed)
                    } else {
                        Ok(None)
                    };
                };
                if end == 0 {
                    return Ok(Some((len, line + 2)));
                }
                line += end + 2;
            }
        }
        let end = start + size;
        if buf.len() < end + 2 {
            return Ok(None);
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(ChunkError::Malformed);
        }
        each(&buf[start..end]);
        len += size;
        at = end + 2;
    }
    Err(ChunkError::TooLarge)
}

/// Why a chunked body was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkError {
    Malformed,
    TooLarge,
}

/// Whether a comma-separated header value holds `token` (ASCII case-insensitive).
pub fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined_bounded_and_checked() {
        let wire = b"3\r\n40,\r\n2;ext=1\r\n42\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        assert_eq!(
            decode_chunked(wire, 100),
            Ok(Some((b"40,42".to_vec(), wire.len() - 4)))
        );
        for cut in 0..wire.len() - 4 {
            assert_eq!(decode_chunked(&wire[..cut], 100), Ok(None), "cut at {cut}");
        }
        assert_eq!(decode_chunked(wire, 4), Err(ChunkError::TooLarge));
        assert_eq!(
            decode_chunked(b"3\r\nabcX\r\n0\r\n\r\n", 100),
            Err(ChunkError::Malformed)
        );
        assert_eq!(decode_chunked(b"zz\r\n", 100), Err(ChunkError::Malformed));
        assert_eq!(
            decode_chunked(b"ffffffffffffffff\r\n", 100),
            Err(ChunkError::TooLarge)
        );
        // Many tiny chunks: bounded in count, whatever the byte limit.
        let mut tiny = b"1\r\na\r\n".repeat(MAX_CHUNKS);
        tiny.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(
            decode_chunked(&tiny, usize::MAX).map(|r| r.map(|(b, _)| b.len())),
            Ok(Some(MAX_CHUNKS))
        );
        let mut too_many = b"1\r\na\r\n".repeat(MAX_CHUNKS + 1);
        too_many.extend_from_slice(b"0\r\n\r\n");
        assert_eq!(
            decode_chunked(&too_many, usize::MAX),
            Err(ChunkError::TooLarge)
        );
    }

    const UPGRADE: &[u8] =
        b"GET /chat?room=1 HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n\
Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Version: 13\r\nOrigin: http://example.com\r\n\r\n";

    #[test]
    fn parses_an_upgrade_head_and_reports_its_length() {
        let mut buf = UPGRADE.to_vec();
        buf.extend_from_slice(b"\x81\x80tail");
        let r = Request::parse(&buf, 8192).unwrap().unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.target, "/chat?room=1");
        assert_eq!(r.path(), "/chat");
        assert_eq!(r.minor_version, 1);
        assert_eq!(r.host, Some(&b"example.com"[..]));
        assert_eq!(r.sec_websocket_key, Some(&b"dGhlIHNhbXBsZSBub25jZQ=="[..]));
        assert_eq!(r.sec_websocket_version, Some(&b"13"[..]));
        assert!(has_token(r.connection.unwrap(), "upgrade"));
        assert_eq!(r.head_len, UPGRADE.len());
    }

    #[test]
    fn every_prefix_is_incomplete_not_an_error() {
        for cut in 0..UPGRADE.len() {
            assert!(
                matches!(Request::parse(&UPGRADE[..cut], 8192), Ok(None)),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn bounds_give_431() {
        let big = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 9000]].concat();
        assert_eq!(
            Request::parse(&big, 8192).unwrap_err(),
            Reject::HeadersTooLarge
        );
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..MAX_HEADERS + 1 {
            many.extend_from_slice(format!("X-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(
            Request::parse(&many, 8192).unwrap_err(),
            Reject::HeadersTooLarge
        );
    }

    #[test]
    fn garbage_is_400() {
        let tls_hello = [
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, b'\r', b'\n',
        ];
        assert!(matches!(
            Request::parse(&tls_hello, 8192),
            Err(Reject::BadRequest(_))
        ));
    }

    #[test]
    fn tokens_are_case_insensitive_and_trimmed() {
        assert!(has_token(b"keep-alive, Upgrade", "upgrade"));
        assert!(has_token(b"UPGRADE", "upgrade"));
        assert!(!has_token(b"upgrader", "upgrade"));
    }
}
