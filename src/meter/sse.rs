//! The incremental SSE event-boundary finder.

use std::fmt;

use http::HeaderMap;
use http::header::CONTENT_TYPE;

/// A metered SSE body ended because the upstream sent an event longer than the layer's
/// limit ([`PaymentLayer::max_event_size`](crate::PaymentLayer::max_event_size)); the
/// events before it were delivered and charged, the oversized one was not.
///
/// It reaches callers as a [`BoxError`](crate::BoxError); downcast to tell it apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventTooLarge {
    /// The limit, in bytes.
    pub limit: usize,
}

impl fmt::Display for EventTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "upstream SSE event is over {} bytes", self.limit)
    }
}

impl std::error::Error for EventTooLarge {}

/// Finds where server-sent events end in a stream that arrives in chunks.
///
/// It follows the [WHATWG event-stream] line rules: a line ends with LF, CRLF or a lone CR,
/// and an empty line ends an event. It only reports offsets, so the bytes can be forwarded
/// as they came; it keeps two flags of state between chunks and never buffers.
///
/// Every blank line is a boundary, so an "event" may be a lone blank line (a keep-alive);
/// meters treat those as free. A CR ends a line at once, so an event that ends with a
/// blank CRLF line ends **after its CR**: the LF, wherever it arrives, is swallowed as the
/// first byte of the next event. That way the boundaries do not depend on how the stream
/// was split into chunks.
///
/// ```
/// use tollgate::meter::SseScanner;
///
/// let mut scanner = SseScanner::new();
/// let chunk = b"data: a\n\ndata: b\n";
/// assert_eq!(scanner.next_boundary(chunk), Some(9));
/// assert_eq!(scanner.next_boundary(&chunk[9..]), None);
/// assert_eq!(scanner.next_boundary(b"\n"), Some(1));
/// ```
///
/// [WHATWG event-stream]: https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream
#[derive(Clone, Copy, Debug, Default)]
pub struct SseScanner {
    /// The last byte seen was a CR: an LF right after it belongs to the same line end.
    after_cr: bool,
    /// The current line already has bytes (seen in an earlier chunk).
    mid_line: bool,
}

impl SseScanner {
    /// A scanner at the start of a stream.
    pub const fn new() -> Self {
        SseScanner { after_cr: false, mid_line: false }
    }

    /// Scans `chunk`, which continues the bytes scanned before.
    ///
    /// Returns `Some(n)` when an event ends within it: `chunk[..n]` completes the event,
    /// up to and including the line end of the blank line that ends it. Call again with
    /// `&chunk[n..]` for the next one. Returns `None` when all of `chunk` was scanned
    /// without an event ending; the state carries over to the next chunk.
    pub fn next_boundary(&mut self, chunk: &[u8]) -> Option<usize> {
        let mut pos = 0;
        loop {
            if self.after_cr {
                let &first = chunk.get(pos)?;
                self.after_cr = false;
                if first == b'\n' {
                    pos += 1;
                    continue;
                }
            }
            let Some(offset) = memchr::memchr2(b'\n', b'\r', &chunk[pos..]) else {
                self.mid_line |= pos < chunk.len();
                return None;
            };
            let end = pos + offset;
            let blank = offset == 0 && !self.mid_line;
            self.after_cr = chunk[end] == b'\r';
            self.mid_line = false;
            pos = end + 1;
            if blank {
                return Some(pos);
            }
        }
    }
}

/// Whether `Content-Type` is `text/event-stream` (parameters ignored).
pub(crate) fn is_event_stream(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE) else {
        return false;
    };
    let value = value.as_bytes();
    let essence = value.split(|&b| b == b';').next().unwrap_or(value);
    essence.trim_ascii().eq_ignore_ascii_case(b"text/event-stream")
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::meter::{SseField, sse_data, sse_fields};

    /// All boundaries of `chunks`, as absolute offsets.
    fn boundaries<'a>(chunks: impl IntoIterator<Item = &'a [u8]>) -> Vec<usize> {
        let mut scanner = SseScanner::new();
        let (mut out, mut base) = (Vec::new(), 0);
        for chunk in chunks {
            let mut rest = chunk;
            while let Some(n) = scanner.next_boundary(rest) {
                assert!(n > 0 && n <= rest.len());
                out.push(base + n);
                base += n;
                rest = &rest[n..];
            }
            base += rest.len();
        }
        out
    }

    /// `bytes` cut at `cuts` (any order, out-of-range and repeated cuts allowed).
    fn split<'a>(bytes: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        let (mut out, mut start) = (Vec::new(), 0);
        for cut in cuts.into_iter().chain([bytes.len()]) {
            out.push(&bytes[start..cut]);
            start = cut;
        }
        out
    }

    /// A byte-at-a-time statement of the rule, as an oracle.
    fn reference(bytes: &[u8]) -> Vec<usize> {
        let (mut out, mut line_len, mut after_cr) = (Vec::new(), 0, false);
        for (i, &b) in bytes.iter().enumerate() {
            let swallowed = after_cr && b == b'\n';
            after_cr = b == b'\r';
            if swallowed {
                continue;
            }
            if b == b'\n' || b == b'\r' {
                if line_len == 0 {
                    out.push(i + 1);
                }
                line_len = 0;
            } else {
                line_len += 1;
            }
        }
        out
    }

    #[test]
    fn finds_events_with_every_line_end() {
        assert_eq!(boundaries([&b"data: a\n\ndata: b\n\n"[..]]), [9, 18]);
        assert_eq!(boundaries([&b"data: a\r\n\r\ndata: b\r\n\r\n"[..]]), [10, 21]);
        assert_eq!(boundaries([&b"data: a\r\rdata: b\r\r"[..]]), [9, 18]);
        assert_eq!(boundaries([&b": ping\n\n\n"[..]]), [8, 9]);
        assert_eq!(boundaries([&b"data: a\ndata: b"[..]]), [] as [usize; 0]);
    }

    #[test]
    fn a_cr_ends_an_event_at_the_end_of_a_chunk() {
        let mut scanner = SseScanner::new();
        assert_eq!(scanner.next_boundary(b"data: a\r\n\r"), Some(10));
        // The LF completes the CRLF above: not a second blank line.
        assert_eq!(scanner.next_boundary(b"\n"), None);
        assert_eq!(scanner.next_boundary(b"\ndata: b\r\n\r\n"), Some(1));
    }

    #[test]
    fn an_empty_chunk_keeps_the_state() {
        let mut scanner = SseScanner::new();
        assert_eq!(scanner.next_boundary(b"data: a\r"), None);
        assert_eq!(scanner.next_boundary(b""), None);
        assert_eq!(scanner.next_boundary(b"\n\n"), Some(2));
    }

    #[test]
    fn recognises_event_stream_content_types() {
        let head = |ct: &str| http::Response::builder().header("content-type", ct).body(()).unwrap();
        for yes in ["text/event-stream", "Text/Event-Stream; charset=utf-8", " text/event-stream ;x"] {
            assert!(is_event_stream(head(yes).headers()), "{yes}");
        }
        for no in ["application/json", "text/event-streams", ""] {
            assert!(!is_event_stream(head(no).headers()), "{no}");
        }
        assert!(!is_event_stream(&HeaderMap::new()));
    }

    /// One line of a generated stream: the bytes before its line end, and the field it
    /// yields (`None` for comments).
    fn line() -> impl Strategy<Value = (Vec<u8>, Option<OwnedField>)> {
        let name = prop_oneof![Just("data".to_owned()), Just("event".to_owned()), "[a-z]{1,5}"];
        let value = "[ a-z:\\[\\]{}\"0-9]{0,10}";
        prop_oneof![
            (name.clone(), any::<bool>(), value).prop_map(|(n, space, v)| {
                let line = format!("{n}:{}{v}", if space { " " } else { "" });
                // The parser strips one space after the colon, whichever wrote it.
                let v = if space { &v[..] } else { v.strip_prefix(' ').unwrap_or(&v) };
                (line.into_bytes(), Some((n.into_bytes(), v.as_bytes().to_vec())))
            }),
            name.prop_map(|n| (n.clone().into_bytes(), Some((n.into_bytes(), Vec::new())))),
            "[ a-z:]{0,8}".prop_map(|c| (format!(":{c}").into_bytes(), None)),
        ]
    }

    /// A stream of events: its bytes, each event's fields and each boundary.
    fn stream() -> impl Strategy<Value = (Vec<u8>, Vec<Vec<OwnedField>>, Vec<usize>)> {
        let ending = prop_oneof![Just(&b"\n"[..]), Just(&b"\r\n"[..]), Just(&b"\r"[..])];
        let event = (prop::collection::vec((line(), ending.clone()), 0..4), ending);
        prop::collection::vec(event, 0..6).prop_map(|events| {
            let (mut bytes, mut fields, mut ends) = (Vec::new(), Vec::new(), Vec::new());
            for (lines, blank_end) in events {
                let mut event_fields = Vec::new();
                for ((text, field), end) in lines {
                    bytes.extend_from_slice(&text);
                    bytes.extend_from_slice(end);
                    event_fields.extend(field);
                }
                // After a CR, a blank LF line would merge into a CRLF: use CR instead.
                let blank_end = if bytes.last() == Some(&b'\r') && blank_end == b"\n" { b"\r" } else { blank_end };
                bytes.extend_from_slice(blank_end);
                ends.push(bytes.len() - usize::from(blank_end == b"\r\n"));
                fields.push(event_fields);
            }
            (bytes, fields, ends)
        })
    }

    type OwnedField = (Vec<u8>, Vec<u8>);

    proptest! {
        #[test]
        fn boundaries_do_not_depend_on_chunking(
            (bytes, fields, ends) in stream(),
            cuts in prop::collection::vec(any::<usize>(), 0..8),
        ) {
            prop_assert_eq!(&boundaries([&bytes[..]]), &ends);
            prop_assert_eq!(&boundaries(split(&bytes, &cuts)), &ends);
            prop_assert_eq!(&reference(&bytes), &ends);

            let mut scratch = Vec::new();
            let mut start = 0;
            for (end, expected) in ends.iter().zip(&fields) {
                let event = &bytes[start..*end];
                start = *end;
                let got: Vec<OwnedField> =
                    sse_fields(event).map(|SseField { name, value }| (name.to_vec(), value.to_vec())).collect();
                prop_assert_eq!(&got, expected);

                let data: Vec<&[u8]> = expected.iter().filter(|(n, _)| n == b"data").map(|(_, v)| &v[..]).collect();
                let joined = (!data.is_empty()).then(|| data.join(&b'\n'));
                prop_assert_eq!(sse_data(event, &mut scratch), joined.as_deref());
            }
        }

        #[test]
        fn arbitrary_bytes_split_anywhere_agree(
            bytes in prop::collection::vec(prop_oneof![Just(b'\n'), Just(b'\r'), Just(b':'), any::<u8>()], 0..64),
            cuts in prop::collection::vec(any::<usize>(), 0..8),
        ) {
            let whole = boundaries([&bytes[..]]);
            prop_assert_eq!(&boundaries(split(&bytes, &cuts)), &whole);
            prop_assert_eq!(&reference(&bytes), &whole);
            let mut scratch = Vec::new();
            let _ = sse_fields(&bytes).count();
            let _ = sse_data(&bytes, &mut scratch);
        }
    }
}
