//! Binary attachment reassembly: a BINARY_EVENT or BINARY_ACK header announces N
//! attachments, which arrive as the next N binary messages of the connection.
//!
//! `Reassembly` is the per-connection state machine. It is idle, or it holds one header and
//! the attachments received so far. The caller parses each text packet (`packet::parse`),
//! hands a binary header to `begin` and every other text packet to `check_text`, and hands
//! every binary message to `feed_binary`. `begin` and `feed_binary` yield the packet once
//! its last attachment has arrived.
//!
//! Invariants: an idle `Reassembly` is one null pointer and owns no buffer; a pending one
//! holds at most `max_attachments` attachments of at most `max_total_bytes` together (the
//! caller's limits, fixed at `begin`); attachments are kept as the `Bytes` they came in,
//! never copied. Every error leaves it idle, and the caller closes the connection.

use std::fmt;

use bytes::Bytes;

/// The bounds on one packet's attachments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttachmentLimits {
    /// Attachments one header may announce (Node's `maxAttachments`, default 10).
    pub max_attachments: usize,
    /// Bytes of all of one packet's attachments together.
    pub max_total_bytes: usize,
}

/// A binary packet with all its attachments: the header's text as received (parse it
/// again with `packet::parse` to borrow from it) and the attachments in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assembled {
    pub header: Bytes,
    pub attachments: Vec<Bytes>,
}

/// Waits for a binary header's attachments. See the module doc.
#[derive(Debug, Default)]
pub struct Reassembly {
    pending: Option<Box<Pending>>,
}

const _: () = assert!(size_of::<Reassembly>() <= size_of::<usize>());

#[derive(Debug)]
struct Pending {
    header: Bytes,
    expected: usize,
    attachments: Vec<Bytes>,
    total_bytes: usize,
    max_total_bytes: usize,
}

/// What was wrong with the order or size of a connection's messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReassemblyError {
    /// A binary message arrived with no binary header waiting for it.
    UnexpectedBinary,
    /// A text packet arrived while a header still waits for attachments.
    TextWhileAwaiting,
    /// A header announced more attachments than `max_attachments`.
    TooManyAttachments,
    /// The attachments together exceed `max_total_bytes`.
    TooLarge,
}

impl fmt::Display for ReassemblyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReassemblyError::UnexpectedBinary => "binary message without a pending header",
            ReassemblyError::TextWhileAwaiting => "text packet while attachments are pending",
            ReassemblyError::TooManyAttachments => "too many attachments",
            ReassemblyError::TooLarge => "attachments exceed the size limit",
        })
    }
}

impl std::error::Error for ReassemblyError {}

impl Reassembly {
    pub fn new() -> Reassembly {
        Reassembly::default()
    }

    /// Attachments still awaited (0 when idle).
    pub fn awaiting(&self) -> usize {
        self.pending
            .as_ref()
            .map_or(0, |pending| pending.expected - pending.attachments.len())
    }

    /// Call for a text packet that is not a binary header: it must not arrive while
    /// attachments are awaited.
    pub fn check_text(&self) -> Result<(), ReassemblyError> {
        match self.pending {
            Some(_) => Err(ReassemblyError::TextWhileAwaiting),
            None => Ok(()),
        }
    }

    /// Starts a binary packet: `header` is its text, `attachments` the count it announced.
    /// Yields it at once when that count is 0.
    pub fn begin(
        &mut self,
        header: Bytes,
        attachments: usize,
        limits: AttachmentLimits,
    ) -> Result<Option<Assembled>, ReassemblyError> {
        if self.pending.take().is_some() {
            return Err(ReassemblyError::TextWhileAwaiting);
        }
        if attachments > limits.max_attachments {
            return Err(ReassemblyError::TooManyAttachments);
        }
        if attachments == 0 {
            return Ok(Some(Assembled {
                header,
                attachments: Vec::new(),
            }));
        }
        self.pending = Some(Box::new(Pending {
            header,
            expected: attachments,
            attachments: Vec::with_capacity(attachments),
            total_bytes: 0,
            max_total_bytes: limits.max_total_bytes,
        }));
        Ok(None)
    }

    /// Takes one binary message as the next attachment. Yields the packet after its last.
    pub fn feed_binary(&mut self, data: Bytes) -> Result<Option<Assembled>, ReassemblyError> {
        let Some(pending) = self.pending.as_mut() else {
            return Err(ReassemblyError::UnexpectedBinary);
        };
        pending.total_bytes = pending.total_bytes.saturating_add(data.len());
        if pending.total_bytes > pending.max_total_bytes {
            self.pending = None;
            return Err(ReassemblyError::TooLarge);
        }
        pending.attachments.push(data);
        if pending.attachments.len() < pending.expected {
            return Ok(None);
        }
        Ok(self.pending.take().map(|done| Assembled {
            header: done.header,
            attachments: done.attachments,
        }))
    }

    /// Drops a pending packet and what it holds.
    pub fn reset(&mut self) {
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: AttachmentLimits = AttachmentLimits {
        max_attachments: 10,
        max_total_bytes: 16,
    };

    fn header() -> Bytes {
        Bytes::from_static(
            br#"52-["e",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
        )
    }

    #[test]
    fn collects_the_announced_attachments_in_order() {
        let mut reassembly = Reassembly::new();
        assert_eq!(reassembly.begin(header(), 2, LIMITS), Ok(None));
        assert_eq!(reassembly.awaiting(), 2);
        let first = Bytes::from_static(b"\x00\x01");
        assert_eq!(reassembly.feed_binary(first.clone()), Ok(None));
        assert_eq!(reassembly.awaiting(), 1);
        let second = Bytes::new();
        let done = reassembly.feed_binary(second.clone());
        assert_eq!(
            done,
            Ok(Some(Assembled {
                header: header(),
                attachments: vec![first, second],
            }))
        );
        assert_eq!(reassembly.awaiting(), 0);
        assert_eq!(reassembly.check_text(), Ok(()));
    }

    #[test]
    fn attachments_are_not_copied() {
        let mut reassembly = Reassembly::new();
        let data = Bytes::from(vec![7u8; 8]);
        assert_eq!(reassembly.begin(header(), 1, LIMITS), Ok(None));
        let done = reassembly.feed_binary(data.clone()).ok().flatten();
        let done = done.expect("complete");
        assert_eq!(done.attachments[0].as_ptr(), data.as_ptr());
    }

    #[test]
    fn no_attachments_completes_at_once() {
        let mut reassembly = Reassembly::new();
        let done = reassembly.begin(Bytes::from_static(b"50-[\"e\"]"), 0, LIMITS);
        assert!(matches!(done, Ok(Some(Assembled { attachments, .. })) if attachments.is_empty()));
        assert_eq!(reassembly.check_text(), Ok(()));
    }

    #[test]
    fn binary_without_a_header_is_an_error() {
        let mut reassembly = Reassembly::new();
        let error = reassembly.feed_binary(Bytes::from_static(b"x"));
        assert_eq!(error, Err(ReassemblyError::UnexpectedBinary));

        assert_eq!(reassembly.begin(header(), 1, LIMITS), Ok(None));
        assert!(matches!(reassembly.feed_binary(Bytes::new()), Ok(Some(_))));
        let error = reassembly.feed_binary(Bytes::from_static(b"x"));
        assert_eq!(error, Err(ReassemblyError::UnexpectedBinary));
    }

    #[test]
    fn text_while_awaiting_is_an_error() {
        let mut reassembly = Reassembly::new();
        assert_eq!(reassembly.begin(header(), 2, LIMITS), Ok(None));
        assert_eq!(
            reassembly.check_text(),
            Err(ReassemblyError::TextWhileAwaiting)
        );
        // Another binary header is a text packet too; it ends the pending one.
        let error = reassembly.begin(header(), 2, LIMITS);
        assert_eq!(error, Err(ReassemblyError::TextWhileAwaiting));
        assert_eq!(reassembly.awaiting(), 0);
    }

    #[test]
    fn attachment_count_is_bounded() {
        let mut reassembly = Reassembly::new();
        let error = reassembly.begin(header(), 11, LIMITS);
        assert_eq!(error, Err(ReassemblyError::TooManyAttachments));
        assert_eq!(reassembly.check_text(), Ok(()));
        assert_eq!(reassembly.begin(header(), 10, LIMITS), Ok(None));
    }

    #[test]
    fn total_bytes_are_bounded() {
        let mut reassembly = Reassembly::new();
        assert_eq!(reassembly.begin(header(), 3, LIMITS), Ok(None));
        assert_eq!(reassembly.feed_binary(Bytes::from(vec![0; 10])), Ok(None));
        assert_eq!(reassembly.feed_binary(Bytes::from(vec![0; 6])), Ok(None));
        let error = reassembly.feed_binary(Bytes::from(vec![0; 1]));
        assert_eq!(error, Err(ReassemblyError::TooLarge));
        // The error dropped the pending packet.
        assert_eq!(reassembly.awaiting(), 0);
        let error = reassembly.feed_binary(Bytes::new());
        assert_eq!(error, Err(ReassemblyError::UnexpectedBinary));

        // Exactly at the limit is fine.
        assert_eq!(reassembly.begin(header(), 1, LIMITS), Ok(None));
        assert!(matches!(
            reassembly.feed_binary(Bytes::from(vec![0; 16])),
            Ok(Some(_))
        ));
    }

    #[test]
    fn reset_drops_the_pending_packet() {
        let mut reassembly = Reassembly::new();
        assert_eq!(reassembly.begin(header(), 2, LIMITS), Ok(None));
        reassembly.reset();
        assert_eq!(reassembly.check_text(), Ok(()));
        assert_eq!(reassembly.awaiting(), 0);
    }

    #[test]
    fn errors_display() {
        let error: &dyn std::error::Error = &ReassemblyError::TooLarge;
        assert_eq!(error.to_string(), "attachments exceed the size limit");
    }
}
