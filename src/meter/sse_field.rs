//! Reading the fields of one server-sent event.

/// One `name: value` line of a server-sent event. See [`sse_fields`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SseField<'a> {
    /// The field name (`data`, `event`, `id`, `retry`, or anything else).
    pub name: &'a [u8],
    /// The value, without the one space that may follow the colon.
    pub value: &'a [u8],
}

/// The fields of `event`, in order, following the [WHATWG event-stream] line rules.
///
/// Lines end with LF, CRLF or a lone CR; a last line without a line end counts too. A line
/// `name: value` yields `name` and `value` (one leading space stripped from the value); a
/// line with no colon is a name with an empty value. Comments (lines starting with `:`) and
/// empty lines yield nothing. Nothing is allocated.
///
/// ```
/// use tollgate::meter::{SseField, sse_fields};
///
/// let mut fields = sse_fields(b": keep-alive\r\nevent: delta\r\ndata:  x\r\n\r\n");
/// assert_eq!(fields.next(), Some(SseField { name: b"event", value: b"delta" }));
/// assert_eq!(fields.next(), Some(SseField { name: b"data", value: b" x" }));
/// assert_eq!(fields.next(), None);
/// ```
///
/// [WHATWG event-stream]: https://html.spec.whatwg.org/multipage/server-sent-events.html#parsing-an-event-stream
pub fn sse_fields(event: &[u8]) -> impl Iterator<Item = SseField<'_>> {
    Fields { rest: event }
}

/// The data of `event`: its `data` field values joined with `\n`, or `None` when it has no
/// `data` field (a comment, a keep-alive, an `event:`-only event).
///
/// A single `data` line is returned as a slice of `event`; several are joined into
/// `scratch` (cleared first), so a caller that keeps `scratch` allocates only while it grows.
///
/// ```
/// use tollgate::meter::sse_data;
///
/// let mut scratch = Vec::new();
/// assert_eq!(sse_data(b"data: {}\n\n", &mut scratch), Some(&b"{}"[..]));
/// assert_eq!(sse_data(b"data: a\ndata: b\n\n", &mut scratch), Some(&b"a\nb"[..]));
/// assert_eq!(sse_data(b": ping\n\n", &mut scratch), None);
/// ```
pub fn sse_data<'a>(event: &'a [u8], scratch: &'a mut Vec<u8>) -> Option<&'a [u8]> {
    let mut data = sse_fields(event).filter(|field| field.name == b"data");
    let first = data.next()?.value;
    let Some(second) = data.next() else {
        return Some(first);
    };
    scratch.clear();
    scratch.extend_from_slice(first);
    for field in [second].into_iter().chain(data) {
        scratch.push(b'\n');
        scratch.extend_from_slice(field.value);
    }
    Some(scratch)
}

/// The iterator behind [`sse_fields`].
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Fields<'a> {
    type Item = SseField<'a>;

    fn next(&mut self) -> Option<SseField<'a>> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (line, rest) = match memchr::memchr2(b'\n', b'\r', self.rest) {
                Some(end) => {
                    let crlf = self.rest[end] == b'\r' && self.rest.get(end + 1) == Some(&b'\n');
                    (&self.rest[..end], &self.rest[end + 1 + usize::from(crlf)..])
                }
                None => (self.rest, &[][..]),
            };
            self.rest = rest;
            match memchr::memchr(b':', line) {
                // An empty line, or a comment.
                _ if line.is_empty() => {}
                Some(0) => {}
                Some(colon) => {
                    let value = &line[colon + 1..];
                    let value = value.strip_prefix(b" ").unwrap_or(value);
                    return Some(SseField { name: &line[..colon], value });
                }
                None => return Some(SseField { name: line, value: &[] }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(event: &[u8]) -> Vec<(&[u8], &[u8])> {
        sse_fields(event).map(|f| (f.name, f.value)).collect()
    }

    #[test]
    fn reads_fields_comments_and_bare_names() {
        let event = b"\n: comment\nevent:done\ndata\ndata:  two\rid: 7";
        assert_eq!(fields(event), [(&b"event"[..], &b"done"[..]), (b"data", b""), (b"data", b" two"), (b"id", b"7")]);
        assert!(fields(b"").is_empty());
        assert!(fields(b"\r\n\r\n:x\n").is_empty());
    }

    #[test]
    fn joins_data_lines_with_lf() {
        let mut scratch = Vec::new();
        assert_eq!(sse_data(b"data: a\r\nevent: x\r\ndata:\r\ndata: c\r\n\r\n", &mut scratch), Some(&b"a\n\nc"[..]));
        assert_eq!(sse_data(b"data:\n\n", &mut scratch), Some(&b""[..]));
        assert_eq!(sse_data(b"event: ping\n\n", &mut scratch), None);
        assert_eq!(sse_data(b"\n", &mut scratch), None);
    }
}
