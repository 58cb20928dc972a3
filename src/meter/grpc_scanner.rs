//! The incremental gRPC message-boundary finder.

use http::HeaderMap;
use http::header::CONTENT_TYPE;

/// The length of a gRPC message prefix: a compressed flag and a big-endian `u32` length.
const PREFIX: usize = 5;

/// Finds where length-prefixed gRPC messages end in a stream that arrives in chunks.
///
/// Each message is a 5-byte prefix (a compressed flag, then the payload length as a
/// big-endian `u32`) and its payload ([gRPC over HTTP/2], `Length-Prefixed-Message`). The
/// prefix itself may be split across chunks. The scanner only reports offsets, so the
/// bytes can be forwarded as they came; it keeps the prefix bytes seen so far and the
/// payload bytes still to come, and never buffers a payload.
///
/// ```
/// use tollgate::meter::GrpcScanner;
///
/// let mut scanner = GrpcScanner::new();
/// // One 2-byte message, then the first 3 bytes of the next prefix.
/// let chunk = [0, 0, 0, 0, 2, b'h', b'i', 0, 0, 0];
/// assert_eq!(scanner.next_boundary(&chunk), Some(7));
/// assert_eq!(scanner.next_boundary(&chunk[7..]), None);
/// assert!(scanner.is_mid_message());
/// assert_eq!(scanner.next_boundary(&[0, 1, b'!']), Some(3));
/// ```
///
/// [gRPC over HTTP/2]: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md
#[derive(Clone, Copy, Debug, Default)]
pub struct GrpcScanner {
    prefix: [u8; PREFIX],
    /// How many prefix bytes of the current message were seen.
    prefix_len: usize,
    /// Payload bytes of the current message still to come (once its prefix is whole).
    remaining: u64,
}

impl GrpcScanner {
    /// A scanner at the start of a stream.
    pub const fn new() -> Self {
        GrpcScanner { prefix: [0; PREFIX], prefix_len: 0, remaining: 0 }
    }

    /// The offset in `chunk` just past the end of the message under way, or `None` if it
    /// does not end in `chunk` (what the chunk holds of it is remembered). Call it again
    /// with the rest of the chunk for the next message.
    pub fn next_boundary(&mut self, chunk: &[u8]) -> Option<usize> {
        let mut at = 0;
        if self.prefix_len < PREFIX {
            let take = (PREFIX - self.prefix_len).min(chunk.len());
            let (from, to) = (self.prefix_len, self.prefix_len + take);
            self.prefix.get_mut(from..to)?.copy_from_slice(chunk.get(..take)?);
            self.prefix_len = to;
            at = take;
            if self.prefix_len < PREFIX {
                return None;
            }
            let [_, a, b, c, d] = self.prefix;
            self.remaining = u64::from(u32::from_be_bytes([a, b, c, d]));
        }
        let left = u64::try_from(chunk.len() - at).unwrap_or(u64::MAX);
        if self.remaining <= left {
            // Fits in `usize`: it is at most `left`, a slice length.
            let end = at + usize::try_from(self.remaining).unwrap_or(usize::MAX);
            self.prefix_len = 0;
            self.remaining = 0;
            return Some(end);
        }
        self.remaining -= left;
        None
    }

    /// Whether a message has begun and not ended.
    pub const fn is_mid_message(&self) -> bool {
        self.prefix_len > 0
    }
}

/// Whether `headers` say the message is gRPC (`content-type: application/grpc`, with or
/// without a `+proto`-style suffix or parameters).
pub(crate) fn is_grpc(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some(rest) = essence.get(..16).filter(|head| head.eq_ignore_ascii_case("application/grpc")) else {
        return false;
    };
    let suffix = &essence[rest.len()..];
    suffix.is_empty() || suffix.starts_with('+')
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn message(payload: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0];
        bytes.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    /// The messages of `stream` fed in `chunks`, as the byte ranges they span.
    fn boundaries(stream: &[u8], cuts: &[usize]) -> Vec<usize> {
        let mut scanner = GrpcScanner::new();
        let (mut ends, mut last) = (Vec::new(), 0);
        for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
            let cut = cut.clamp(last, stream.len());
            let mut offset = last;
            while let Some(n) = scanner.next_boundary(&stream[offset..cut]) {
                offset += n;
                ends.push(offset);
            }
            last = cut;
        }
        ends
    }

    #[test]
    fn empty_messages_and_split_prefixes() {
        let stream = [message(b""), message(b"abc"), message(b"")].concat();
        assert_eq!(boundaries(&stream, &[]), [5, 13, 18]);
        assert_eq!(boundaries(&stream, &[1, 2, 3, 4, 6, 12, 14]), [5, 13, 18]);
    }

    #[test]
    fn a_huge_length_never_ends_and_never_overflows() {
        let mut scanner = GrpcScanner::new();
        assert_eq!(scanner.next_boundary(&[1, 0xff, 0xff, 0xff, 0xff, 1, 2, 3]), None);
        assert!(scanner.is_mid_message());
        assert_eq!(scanner.next_boundary(&[]), None);
    }

    #[test]
    fn grpc_content_types() {
        let yes =
            ["application/grpc", "application/grpc+proto", "Application/GRPC; charset=x", "application/grpc+json"];
        let no = ["application/grpc-web", "application/grpcx", "application/json", "text/event-stream"];
        for (value, expected) in yes.iter().map(|v| (v, true)).chain(no.iter().map(|v| (v, false))) {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, value.parse().unwrap());
            assert_eq!(is_grpc(&headers), expected, "{value}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    proptest! {
        /// However the stream is split into chunks, the same messages are found, where
        /// they really end.
        #[test]
        fn any_framing_finds_the_same_messages(
            payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..12), 0..8),
            cuts in prop::collection::vec(0usize..120, 0..12),
        ) {
            let stream: Vec<u8> = payloads.iter().flat_map(|p| message(p)).collect();
            let mut expected = Vec::new();
            let mut end = 0;
            for payload in &payloads {
                end += PREFIX + payload.len();
                expected.push(end);
            }
            let mut cuts = cuts;
            cuts.sort_unstable();
            prop_assert_eq!(boundaries(&stream, &cuts), expected);
        }
    }
}
