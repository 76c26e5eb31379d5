//! The JSON walk behind `packet::parse`: serde visitors that validate a payload without
//! building a tree and report only what the packet rules need.
//!
//! `inspect` reads the payload once with `serde_json`'s streaming deserializer and returns its
//! top-level [`Shape`], the raw text of an array's first element (an event's name) and, for
//! binary packets, the attachment placeholders `{"_placeholder":true,"num":N}` at any depth.
//!
//! Invariants:
//! - No tree is built and nothing is allocated per value, except a small `String` for an
//!   object key or event name written with escapes. serde_json decodes other escaped
//!   strings into one scratch buffer per walk, and keeps the nesting of skipped values there.
//! - Object keys are lexed as raw tokens and decoded only when they have escapes, so a key
//!   with a lone surrogate escape (which `JSON.parse` accepts) is not an error. Values that
//!   are skipped (everything in a packet without attachments) are not decoded at all.
//! - Only binary packets are walked value by value. That walk recurses, so serde_json's
//!   nesting limit (128) bounds it. Its strings are decoded, so a lone surrogate escape
//!   or a number out of `f64` range makes a binary packet bad JSON. A packet without
//!   attachments accepts both, as Node does.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// What to look for while walking a payload.
#[derive(Clone, Copy, Debug)]
pub(super) struct Walk {
    /// Keep the raw text of a top-level array's first element (an event's name).
    pub keep_first: bool,
    /// Walk every array element and count attachment placeholders (binary packets).
    pub find_placeholders: bool,
}

/// A payload's top-level JSON type, with what was found inside an array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Shape<'a> {
    Object,
    String,
    Array {
        /// The first element's JSON text, exactly as in the input (when `keep_first`).
        first: Option<&'a str>,
        /// Placeholders in the elements after `first` (when `find_placeholders`).
        placeholders: Placeholders,
    },
    /// A number, `true`, `false` or `null`.
    Scalar,
}

/// The attachment placeholders found in a value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Placeholders {
    pub count: usize,
    /// The largest `num` among them.
    pub highest_num: Option<u64>,
    /// One of them had a `num` that is missing or not a non-negative integer.
    pub malformed: bool,
}

impl Placeholders {
    fn one(num: Option<u64>) -> Placeholders {
        Placeholders {
            count: 1,
            highest_num: num,
            malformed: num.is_none(),
        }
    }

    fn add(&mut self, other: Placeholders) {
        self.count = self.count.saturating_add(other.count);
        self.highest_num = self.highest_num.max(other.highest_num);
        self.malformed |= other.malformed;
    }

    /// Every placeholder names one of `attachments` attachments (`num` < `attachments`).
    pub fn fit(&self, attachments: usize) -> bool {
        !self.malformed
            && self
                .highest_num
                .is_none_or(|num| u64::try_from(attachments).is_ok_and(|n| num < n))
    }
}

/// Validates `text` as one JSON value (whitespace around it allowed) and reports its shape.
pub(super) fn inspect(text: &str, walk: Walk) -> Result<Shape<'_>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let shape = (&mut deserializer).deserialize_any(TopLevel(walk))?;
    deserializer.end()?;
    Ok(shape)
}

/// Decodes a JSON string token already validated by a walk (quotes included, as
/// `Shape::Array::first` gives it; raw control characters are not rejected here):
/// borrowed when it has no escapes. A lone surrogate escape decodes to
/// three U+FFFD (one per byte of its WTF-8 form).
pub(super) fn decode_string(token: &str) -> Result<Cow<'_, str>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(token);
    let text = (&mut deserializer).deserialize_bytes(StringBytes)?;
    deserializer.end()?;
    Ok(text)
}

struct TopLevel(Walk);

impl<'de> Visitor<'de> for TopLevel {
    type Value = Shape<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Shape<'de>, E> {
        Ok(Shape::Scalar)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Shape<'de>, E> {
        Ok(Shape::Scalar)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Shape<'de>, E> {
        Ok(Shape::Scalar)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Shape<'de>, E> {
        Ok(Shape::Scalar)
    }

    fn visit_unit<E>(self) -> Result<Shape<'de>, E> {
        Ok(Shape::Scalar)
    }

    fn visit_str<E>(self, _: &str) -> Result<Shape<'de>, E> {
        Ok(Shape::String)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape<'de>, A::Error> {
        while map.next_key_seed(KeySeed)?.is_some() {
            map.next_value::<IgnoredAny>()?;
        }
        Ok(Shape::Object)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Shape<'de>, A::Error> {
        let Walk {
            keep_first,
            find_placeholders,
        } = self.0;
        let first = if keep_first {
            seq.next_element::<&'de RawValue>()?.map(RawValue::get)
        } else {
            None
        };
        let mut placeholders = Placeholders::default();
        if find_placeholders {
            while let Some(element) = seq.next_element_seed(Scan)? {
                placeholders.add(element.placeholders());
            }
        } else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
        }
        Ok(Shape::Array {
            first,
            placeholders,
        })
    }
}

/// The object keys that make a placeholder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Key {
    Placeholder,
    Num,
    Other,
}

impl Key {
    fn of(key: &str) -> Key {
        match key {
            "_placeholder" => Key::Placeholder,
            "num" => Key::Num,
            _ => Key::Other,
        }
    }
}

/// Reads an object key as its JSON token (a `RawValue`, so lexed as strictly as any skipped
/// string, lone surrogate escapes allowed) and decodes it only when it has escapes.
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Key, D::Error> {
        let token = <&'de RawValue>::deserialize(deserializer)?.get();
        Ok(
            match token.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
                Some(plain) if !plain.contains('\\') => Key::of(plain),
                _ => Key::of(&decode_string(token).map_err(de::Error::custom)?),
            },
        )
    }
}

/// What one value of a binary packet turned out to be, as far as placeholders care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scanned {
    /// `true`: the value `_placeholder` must have.
    True,
    /// A non-negative integer: a possible `num`.
    Index(u64),
    /// Any other number, string, `false` or `null`.
    Other,
    /// An array or object, with the placeholders in it (or itself, if it is one).
    Nested(Placeholders),
}

impl Scanned {
    fn placeholders(self) -> Placeholders {
        match self {
            Scanned::Nested(found) => found,
            _ => Placeholders::default(),
        }
    }
}

/// Walks one value of a binary packet, looking for placeholders at any depth.
#[derive(Clone, Copy)]
struct Scan;

impl<'de> DeserializeSeed<'de> for Scan {
    type Value = Scanned;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Scanned, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Scan {
    type Value = Scanned;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<Scanned, E> {
        Ok(if value { Scanned::True } else { Scanned::Other })
    }

    fn visit_u64<E>(self, value: u64) -> Result<Scanned, E> {
        Ok(Scanned::Index(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Scanned, E> {
        Ok(u64::try_from(value).map_or(Scanned::Other, Scanned::Index))
    }

    fn visit_f64<E>(self, value: f64) -> Result<Scanned, E> {
        // `1.0` (and `-0`) index an attachment in JavaScript as well as `1` does.
        const TWO_TO_THE_64: f64 = 18_446_744_073_709_551_616.0;
        let integral = (0.0..TWO_TO_THE_64).contains(&value) && value.fract() == 0.0;
        Ok(if integral {
            Scanned::Index(value as u64)
        } else {
            Scanned::Other
        })
    }

    fn visit_str<E>(self, _: &str) -> Result<Scanned, E> {
        Ok(Scanned::Other)
    }

    fn visit_unit<E>(self) -> Result<Scanned, E> {
        Ok(Scanned::Other)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scanned, A::Error> {
        let mut found = Placeholders::default();
        while let Some(element) = seq.next_element_seed(Scan)? {
            found.add(element.placeholders());
        }
        Ok(Scanned::Nested(found))
    }

    /// Node's rule (`reconstructPacket`): an object whose `_placeholder` is `true` is
    /// replaced whole by an attachment, and its `num` must be an integer index; any other
    /// object is searched member by member. A repeated key counts by its last value, as in
    /// `JSON.parse`; the values it overrides are still searched (stricter than Node).
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scanned, A::Error> {
        let mut is_placeholder = false;
        let mut num = None;
        let mut inside = Placeholders::default();
        while let Some(key) = map.next_key_seed(KeySeed)? {
            let value = map.next_value_seed(Scan)?;
            match key {
                Key::Placeholder => is_placeholder = value == Scanned::True,
                Key::Num => {
                    num = match value {
                        Scanned::Index(index) => Some(index),
                        _ => None,
                    }
                }
                Key::Other => {}
            }
            inside.add(value.placeholders());
        }
        Ok(Scanned::Nested(if is_placeholder {
            Placeholders::one(num)
        } else {
            inside
        }))
    }
}

/// A string's decoded bytes as text; the input is UTF-8, so only a lone surrogate
/// escape (decoded as WTF-8) can make them invalid; its bytes become U+FFFD.
struct StringBytes;

impl<'de> Visitor<'de> for StringBytes {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON string")
    }

    fn visit_borrowed_bytes<E>(self, bytes: &'de [u8]) -> Result<Cow<'de, str>, E> {
        Ok(String::from_utf8_lossy(bytes))
    }

    fn visit_bytes<E>(self, bytes: &[u8]) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(String::from_utf8_lossy(bytes).into_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Walk = Walk {
        keep_first: false,
        find_placeholders: false,
    };
    const BINARY: Walk = Walk {
        keep_first: false,
        find_placeholders: true,
    };

    fn placeholders(text: &str) -> Placeholders {
        match inspect(text, BINARY) {
            Ok(Shape::Array { placeholders, .. }) => placeholders,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn shapes() {
        let cases: &[(&str, Shape<'_>)] = &[
            (r#"{"a":[1,{"b":null}]}"#, Shape::Object),
            (r#" "x\n" "#, Shape::String),
            ("12.5", Shape::Scalar),
            ("null", Shape::Scalar),
            ("false", Shape::Scalar),
            (
                "[]",
                Shape::Array {
                    first: None,
                    placeholders: Placeholders::default(),
                },
            ),
        ];
        for (text, shape) in cases {
            assert_eq!(inspect(text, PLAIN).ok(), Some(*shape), "{text}");
        }
    }

    #[test]
    fn first_element_is_kept_as_written() {
        let walk = Walk {
            keep_first: true,
            find_placeholders: true,
        };
        let text = r#"[ "a\u0062" , {"_placeholder":true,"num":3}]"#;
        let Ok(Shape::Array {
            first,
            placeholders,
        }) = inspect(text, walk)
        else {
            panic!("not an array");
        };
        assert_eq!(first, Some(r#""a\u0062""#));
        assert_eq!(placeholders, Placeholders::one(Some(3)));
    }

    #[test]
    fn invalid_json_is_an_error() {
        for text in [
            "", " ", "[", "[1,]", "{\"a\"}", "[1] 2", "'x'", "[01]", "nul",
        ] {
            assert!(inspect(text, PLAIN).is_err(), "{text:?}");
            assert!(inspect(text, BINARY).is_err(), "{text:?}");
        }
    }

    #[test]
    fn placeholders_at_any_depth() {
        let found = placeholders(
            r#"[{"a":[{"_placeholder":true,"num":2}]},{"_placeholder":true,"num":0},[[{"x":{"_placeholder":true,"num":1.0}}]]]"#,
        );
        assert_eq!(found.count, 3);
        assert_eq!(found.highest_num, Some(2));
        assert!(!found.malformed);
        assert!(found.fit(3));
        assert!(!found.fit(2));
    }

    #[test]
    fn what_is_not_a_placeholder() {
        for text in [
            r#"[{"_placeholder":false,"num":0}]"#,
            r#"[{"_placeholder":"true","num":0}]"#,
            r#"[{"_placeholder":1,"num":0}]"#,
            r#"[{"_placeholder":true,"_placeholder":null,"num":0}]"#,
            r#"["_placeholder",true,"num",0]"#,
        ] {
            assert_eq!(placeholders(text), Placeholders::default(), "{text}");
        }
    }

    #[test]
    fn malformed_num() {
        for text in [
            r#"[{"_placeholder":true}]"#,
            r#"[{"_placeholder":true,"num":-1}]"#,
            r#"[{"_placeholder":true,"num":0.5}]"#,
            r#"[{"_placeholder":true,"num":"0"}]"#,
            r#"[{"_placeholder":true,"num":0,"num":null}]"#,
        ] {
            let found = placeholders(text);
            assert!(found.malformed && !found.fit(10), "{text}");
        }
    }

    #[test]
    fn raw_control_characters_are_invalid_in_keys_too() {
        for text in [
            "{\"a\u{1}\":1}",
            "[{\"a\u{0}b\":1}]",
            "[{\"\\u005f\u{1f}\":1}]",
        ] {
            assert!(inspect(text, PLAIN).is_err(), "{text:?}");
            assert!(inspect(text, BINARY).is_err(), "{text:?}");
        }
    }

    #[test]
    fn escaped_keys_are_decoded() {
        let found = placeholders(r#"[{"\u005fplaceholder":true,"n\u0075m":0}]"#);
        assert_eq!(found, Placeholders::one(Some(0)));
    }

    #[test]
    fn a_placeholder_hides_what_it_holds() {
        // Node replaces the whole object, so an index inside it is never looked at.
        let found = placeholders(r#"[{"_placeholder":true,"num":0,"x":{"_placeholder":true}}]"#);
        assert_eq!(found, Placeholders::one(Some(0)));
    }

    #[test]
    fn lone_surrogates() {
        // Skipped values and keys are not decoded, as `JSON.parse` accepts them.
        assert!(inspect(r#"["\ud800",{"\udc00":"\ud800"}]"#, PLAIN).is_ok());
        assert!(placeholders(r#"[{"\ud800":1}]"#).count == 0);
        assert_eq!(
            decode_string(r#""a\ud800""#).ok(),
            Some("a\u{fffd}\u{fffd}\u{fffd}".into())
        );
    }

    #[test]
    fn strings_borrow_unless_escaped() {
        assert!(matches!(
            decode_string(r#""plain""#),
            Ok(Cow::Borrowed("plain"))
        ));
        assert!(matches!(decode_string(r#""tab\t""#), Ok(Cow::Owned(s)) if s == "tab\t"));
        assert!(decode_string("[1]").is_err());
        assert!(decode_string("1").is_err());
    }

    #[test]
    fn depth() {
        let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        // Skipped values nest as deep as the input goes; the binary walk stops at 128.
        assert!(inspect(&deep(100_000), PLAIN).is_ok());
        assert!(inspect(&deep(100), BINARY).is_ok());
        assert!(inspect(&deep(200), BINARY).is_err());
    }
}
