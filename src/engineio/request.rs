//! An Engine.IO HTTP request, classified before any session is touched: the query
//! (`EIO`, `transport`, `sid`, JSONP `j`), the checks Node's server makes in its order,
//! and the error answers (`{"code":N,"message":"…"}`).
//!
//! Order (as Node's `verify` then `handshake`): unknown or missing transport → 0; with a
//! `sid` the session lookup decides (1 unknown, 3 transport mismatch; done by the caller);
//! without one: not a GET → 2, `transport=websocket` without an Upgrade → 3, `EIO` not
//! `4` (missing and garbage too) → 5, then the app's `allow_request` hook → 4.
//! Other query parameters (`t`, the client's cache-buster, and anything unknown) are
//! ignored. Percent-encoding is not decoded: no value Engine.IO reads needs it.

use std::fmt;

/// The two transports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Polling,
    WebSocket,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Polling => "polling",
            Transport::WebSocket => "websocket",
        }
    }
}

/// Engine.IO's HTTP error codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    TransportUnknown = 0,
    UnknownSid = 1,
    BadHandshakeMethod = 2,
    BadRequest = 3,
    Forbidden = 4,
    UnsupportedProtocolVersion = 5,
}

impl ErrorCode {
    pub fn message(self) -> &'static str {
        match self {
            ErrorCode::TransportUnknown => "Transport unknown",
            ErrorCode::UnknownSid => "Session ID unknown",
            ErrorCode::BadHandshakeMethod => "Bad handshake method",
            ErrorCode::BadRequest => "Bad request",
            ErrorCode::Forbidden => "Forbidden",
            ErrorCode::UnsupportedProtocolVersion => "Unsupported protocol version",
        }
    }

    /// 403 for `Forbidden`, 400 for the rest.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::Forbidden => 403,
            _ => 400,
        }
    }

    /// The JSON body of an error answer.
    pub fn body(self) -> String {
        format!(
            r#"{{"code":{},"message":"{}"}}"#,
            self as u8,
            self.message()
        )
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message(), *self as u8)
    }
}

/// The query of an Engine.IO request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Query<'a> {
    pub transport: Transport,
    /// Whether `EIO=4`.
    pub eio4: bool,
    pub sid: Option<&'a str>,
    /// JSONP polling: the `j` index, when present and numeric.
    pub jsonp: Option<u32>,
}

/// Parses the query part of a request target (`/socket.io/?EIO=4&transport=polling`):
/// an error only when the transport is missing or unknown (code 0).
pub fn parse_query(target: &str) -> Result<Query<'_>, ErrorCode> {
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let mut transport = None;
    let mut eio4 = false;
    let mut sid = None;
    let mut jsonp = None;
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "transport" => {
                transport = match value {
                    "polling" => Some(Transport::Polling),
                    "websocket" => Some(Transport::WebSocket),
                    _ => None,
                }
            }
            "EIO" => eio4 = value == "4",
            // An empty sid opens a session, as in Node.
            "sid" => sid = Some(value).filter(|v| !v.is_empty()),
            "j" => jsonp = value.parse().ok(),
            _ => {}
        }
    }
    Ok(Query {
        transport: transport.ok_or(ErrorCode::TransportUnknown)?,
        eio4,
        sid,
        jsonp,
    })
}

/// The checks of a request that opens a session (no `sid`), before the app's hook.
pub fn check_handshake(query: &Query<'_>, is_get: bool, is_upgrade: bool) -> Result<(), ErrorCode> {
    if !is_get {
        return Err(ErrorCode::BadHandshakeMethod);
    }
    if query.transport == Transport::WebSocket && !is_upgrade {
        return Err(ErrorCode::BadRequest);
    }
    if !query.eio4 {
        return Err(ErrorCode::UnsupportedProtocolVersion);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_and_ignore_unknown_parameters() {
        let q = parse_query("/socket.io/?EIO=4&transport=polling&t=OabC1&x").expect("ok");
        assert_eq!(
            q,
            Query {
                transport: Transport::Polling,
                eio4: true,
                sid: None,
                jsonp: None
            }
        );
        let q = parse_query("/socket.io/?transport=websocket&sid=abc_-&EIO=4&j=3").expect("ok");
        assert_eq!(q.transport, Transport::WebSocket);
        assert_eq!(q.sid, Some("abc_-"));
        assert_eq!(q.jsonp, Some(3));
    }

    #[test]
    fn a_missing_or_unknown_transport_is_code_0() {
        for target in [
            "/socket.io/",
            "/socket.io/?EIO=4",
            "/socket.io/?EIO=4&transport=flash",
            "/socket.io/?EIO=4&transport=",
        ] {
            assert_eq!(
                parse_query(target),
                Err(ErrorCode::TransportUnknown),
                "{target}"
            );
        }
    }

    #[test]
    fn handshake_checks_follow_nodes_order() {
        fn q(t: &str) -> Query<'_> {
            parse_query(t).expect("transport")
        }
        let polling = q("/?EIO=4&transport=polling");
        assert_eq!(check_handshake(&polling, true, false), Ok(()));
        assert_eq!(
            check_handshake(&polling, false, false),
            Err(ErrorCode::BadHandshakeMethod)
        );
        let ws = q("/?EIO=4&transport=websocket");
        assert_eq!(check_handshake(&ws, true, true), Ok(()));
        assert_eq!(
            check_handshake(&ws, true, false),
            Err(ErrorCode::BadRequest)
        );
        for eio in ["", "&EIO=3", "&EIO=abc", "&EIO=40"] {
            let target = format!("/?transport=polling{eio}");
            let old = q(&target);
            assert_eq!(
                check_handshake(&old, true, false),
                Err(ErrorCode::UnsupportedProtocolVersion),
                "{eio}"
            );
        }
    }

    #[test]
    fn error_bodies_and_statuses() {
        assert_eq!(
            ErrorCode::UnknownSid.body(),
            r#"{"code":1,"message":"Session ID unknown"}"#
        );
        assert_eq!(ErrorCode::Forbidden.status(), 403);
        assert_eq!(ErrorCode::UnsupportedProtocolVersion.status(), 400);
        let v: serde_json::Value =
            serde_json::from_str(&ErrorCode::UnsupportedProtocolVersion.body()).expect("json");
        assert_eq!(v["code"], 5);
    }
}
