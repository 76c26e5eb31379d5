//! The Redis bridge's decoders on arbitrary bytes: the classic format's broadcasts
//! (msgpack `[uid, packet, opts]`), requests and answers, and the sharded format's
//! `{uid, nsp, type, data}` (`bridge::sharded`).
//!
//! Checks, besides "no panic": every decoded element is JSON; each attachment has a
//! placeholder; a decoded broadcast re-encoded decodes to the same
//! message (the format is its own inverse after one pass).
//!
//! The first byte picks the decoder (even: broadcast; odd: request on `/`, then the
//! same bytes as an answer on a response channel, re-encoded and decoded again).
#![no_main]

use libfuzzer_sys::fuzz_target;
use throng::bridge::classic::{decode, decode_request, decode_response, encode, encode_response};

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    if first % 2 == 1 {
        let _ = decode_request("socket.io", b"socket.io-request#/#", body);
        // The sharded format's decoder takes the same bytes.
        let _ = throng::bridge::sharded::decode(body);
        // And so does the decoder of forwarded polling requests.
        if let Some(m) = throng::bridge::eio::decode(body) {
            assert_eq!(throng::bridge::eio::decode(&throng::bridge::eio::encode(&m)), Some(m));
        }
        if let Some(response) = decode_response(body)
            && let Some(again) = encode_response(&response)
        {
            // What an answer decoded to re-encodes into a fixed point after one pass
            // (the first pass only normalizes JSON spacing and number text).
            let once = decode_response(&again).expect("a re-encoded answer decodes");
            let twice = encode_response(&once).expect("and encodes");
            assert_eq!(decode_response(&twice), Some(once));
        }
        return;
    }
    let Ok(m) = decode(body) else {
        return;
    };
    let mut placeholders = 0;
    for e in &m.elements {
        let v: serde_json::Value = serde_json::from_str(e).expect("decoded elements are JSON");
        placeholders += count_placeholders(&v);
    }
    // Every attachment has its placeholder (a map that merely looks like one may add
    // more, as it would in Node).
    assert!(placeholders >= m.attachments.len());
    let again = m
        .as_relayed(|b| encode(&m.uid, b))
        .expect("decoded elements encode");
    let back = decode(&again).expect("re-encoded message decodes");
    assert_eq!(back, m);
});

fn count_placeholders(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(items) => items.iter().map(count_placeholders).sum(),
        serde_json::Value::Object(map) => {
            if map.get("_placeholder") == Some(&serde_json::Value::Bool(true)) && map.len() == 2 {
                1
            } else {
                map.values().map(count_placeholders).sum()
            }
        }
        _ => 0,
    }
}
