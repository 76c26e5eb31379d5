//! Input splitting shared by the targets that feed a streaming parser.
//!
//! The fuzzer chooses where the stream is cut, so every target also checks that its parser
//! gives the same answer whatever the read boundaries (uWS's fuzzers chunk their input the
//! same way). Layout of an input:
//!
//! ```text
//! byte 0          low 4 bits: k, the number of cut points (0..=15); high 4 bits: a knob
//!                 the target may use (returned as `knob`)
//! bytes 1..=k     the length of each of the first k pieces (0..=255; 0 gives an empty piece)
//! the rest        the stream; whatever the k pieces did not take is the last piece
//! ```

/// The stream and the lengths of its pieces, which sum to `stream.len()`.
pub struct Chunked<'a> {
    pub knob: u8,
    pub stream: &'a [u8],
    pub lengths: Vec<usize>,
}

/// Splits a fuzzer input as described in the module docs; `None` if it is empty.
pub fn chunked(data: &[u8]) -> Option<Chunked<'_>> {
    let (&first, rest) = data.split_first()?;
    let cuts = usize::from(first & 0x0F).min(rest.len());
    let (sizes, stream) = rest.split_at(cuts);
    let mut lengths = Vec::with_capacity(cuts + 1);
    let mut left = stream.len();
    for &size in sizes {
        let n = usize::from(size).min(left);
        lengths.push(n);
        left -= n;
    }
    lengths.push(left);
    Some(Chunked {
        knob: first >> 4,
        stream,
        lengths,
    })
}
