//! CORS for the polling transport: off by default (no `Access-Control-*` header at all);
//! with `--cors-origin` a listed origin (or any, with `*`) is echoed back with
//! `Vary: Origin`, and `--cors-credentials` allows cookies. A preflight `OPTIONS` is
//! answered from this policy alone, before any session lookup.

/// Which origins may read polling responses.
#[derive(Clone, Debug, Default)]
pub struct Cors {
    /// Allowed origins; empty: CORS off.
    origins: Vec<String>,
    any: bool,
    credentials: bool,
}

impl Cors {
    /// `origins`: exact origins (`https://app.example`), or `*` for any.
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(origins: I, credentials: bool) -> Cors {
        let mut cors = Cors {
            credentials,
            ..Cors::default()
        };
        for origin in origins {
            let origin: String = origin.into();
            let origin = origin.trim().trim_end_matches('/').to_string();
            if origin == "*" {
                cors.any = true;
            } else if !origin.is_empty() {
                cors.origins.push(origin);
            }
        }
        cors
    }

    pub fn enabled(&self) -> bool {
        self.any || !self.origins.is_empty()
    }

    /// Header lines for a response to a request from `origin` (none if not allowed).
    pub fn headers(&self, origin: Option<&[u8]>) -> Vec<u8> {
        let Some(origin) = origin else {
            return Vec::new();
        };
        let allowed = self.any || self.origins.iter().any(|o| o.as_bytes() == origin);
        if !allowed || origin.iter().any(|&b| b == b'\r' || b == b'\n') {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(96 + origin.len());
        out.extend_from_slice(b"Access-Control-Allow-Origin: ");
        out.extend_from_slice(origin);
        out.extend_from_slice(b"\r\nVary: Origin\r\n");
        if self.credentials {
            out.extend_from_slice(b"Access-Control-Allow-Credentials: true\r\n");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_echoes_only_allowed_origins() {
        assert!(
            Cors::default()
                .headers(Some(b"https://a.example"))
                .is_empty()
        );
        let cors = Cors::new(["https://a.example/"], true);
        assert!(cors.enabled());
        assert_eq!(
            cors.headers(Some(b"https://a.example")),
            b"Access-Control-Allow-Origin: https://a.example\r\nVary: Origin\r\n\
Access-Control-Allow-Credentials: true\r\n"
        );
        assert!(cors.headers(Some(b"https://b.example")).is_empty());
        assert!(cors.headers(None).is_empty());
        let any = Cors::new(["*"], false);
        assert_eq!(
            any.headers(Some(b"http://x")),
            b"Access-Control-Allow-Origin: http://x\r\nVary: Origin\r\n"
        );
    }
}
