//! JSONP polling (`j=N` in the query), for browsers without XHR2: a GET answers a
//! script `___eio[N]("<payload as a JS string>");`, a POST sends a form body
//! `d=<payload>` in which the client escaped newlines as `\n`.
//!
//! Both directions are sans-IO and bounded by their input.

/// Wraps a polling payload in the JSONP callback for index `index`.
pub fn wrap(index: u32, payload: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(payload);
    let mut out = Vec::with_capacity(payload.len() + 24);
    out.extend_from_slice(format!("___eio[{index}](").as_bytes());
    // serde_json escapes quotes, backslashes and control characters; U+2028/2029 are
    // valid in JSON but end a line in older JavaScript, so they are escaped too.
    let quoted = serde_json::to_string(&text).unwrap_or_else(|_| "\"\"".to_string());
    let quoted = quoted
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029");
    out.extend_from_slice(quoted.as_bytes());
    out.extend_from_slice(b");");
    out
}

/// The payload of a JSONP POST body (`application/x-www-form-urlencoded`, field `d`),
/// with the client's `\n` escapes turned back into newlines (`\\n` is kept as is).
/// `None`: no `d` field, or it does not decode.
pub fn unwrap_form(body: &[u8]) -> Option<Vec<u8>> {
    let value = body
        .split(|&b| b == b'&')
        .find_map(|pair| pair.strip_prefix(b"d="))?;
    let decoded = percent_decode(value)?;
    let mut out = Vec::with_capacity(decoded.len());
    let mut i = 0;
    while i < decoded.len() {
        match (decoded[i], decoded.get(i + 1)) {
            (b'\\', Some(b'\\')) => {
                out.extend_from_slice(b"\\\\");
                i += 2;
            }
            (b'\\', Some(b'n')) => {
                out.push(b'\n');
                i += 2;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Form decoding: `+` is a space, `%XX` a byte.
fn percent_decode(value: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        match value[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = value.get(i + 1..i + 3)?;
                let text = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(text, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_a_payload_as_a_script_string() {
        assert_eq!(wrap(0, b"4hello"), b"___eio[0](\"4hello\");");
        assert_eq!(
            wrap(3, "2\u{1e}4\"x\"\n\u{2028}".as_bytes()),
            b"___eio[3](\"2\\u001e4\\\"x\\\"\\n\\u2028\");"
        );
    }

    #[test]
    fn unwraps_a_form_body() {
        assert_eq!(unwrap_form(b"d=4hello+world").unwrap(), b"4hello world");
        assert_eq!(unwrap_form(b"d=4a%5Cnb").unwrap(), b"4a\nb");
        assert_eq!(unwrap_form(b"d=4a%5C%5Cnb").unwrap(), b"4a\\\\nb");
        assert_eq!(unwrap_form(b"x=1&d=4%E2%82%AC").unwrap(), "4€".as_bytes());
        assert_eq!(unwrap_form(b"x=1"), None);
        assert_eq!(unwrap_form(b"d=%4"), None);
        assert_eq!(unwrap_form(b"d=%zz"), None);
    }
}
