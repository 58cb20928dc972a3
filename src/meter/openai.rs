//! The OpenAI chat-completions token meter.

use std::fmt;
use std::io::Write;
use std::mem;

use bytes::Bytes;
use http::{request, response};

use self::scan::Scanner;
use super::openai_chunk::{Chunk, Summary};
use super::sse::is_event_stream;
use super::{MakeMeter, Meter, sse_data};
use crate::amount::{Quote, Usage};

#[path = "openai_scan.rs"]
mod scan;

/// How much of a non-streamed body is kept to read its `usage` at the end.
const MAX_JSON_BODY: usize = 8 << 20;

/// Counts OpenAI chat-completion tokens (unit `llm_token`): estimated while the response
/// streams, reconciled to the provider's `usage` when it arrives.
///
/// - **Input** is the quote's estimated prompt tokens (`quote.upfront.input`) until a
///   `usage` object gives `prompt_tokens`.
/// - **Streamed** (`text/event-stream`) responses are read one `data:` chunk at a time. A
///   chunk's text is the UTF-8 length of every choice's delta `content`,
///   `reasoning_content`, `reasoning`, `refusal` and tool-call `function.name` and
///   `function.arguments`; it is estimated at **4 bytes per token, and at least one token
///   for a chunk with any text**. A chunk with a non-null `usage` (OpenAI's final
///   `choices: []` chunk, llama.cpp's `finish_reason` chunk, vLLM's running usage in every
///   chunk) sets the usage to its `prompt_tokens` / `completion_tokens`; the last one
///   wins, and only chunks after it add to it (by the estimate). `data: [DONE]`,
///   `{"error": ...}` frames, comments and data that is not a JSON object are free.
/// - **Non-streamed** (`stream: false`) responses are estimated at 4 bytes of body per
///   token as they arrive. The body is kept (up to 8 MiB; past that the estimate stands)
///   and its `usage` read at the end; a body with no `usage` keeps the estimate, and an
///   `{"error": ...}` body has no output.
///
/// When the budget stops a stream, [`Meter::cutoff`] ends it the way a `max_tokens` limit
/// would: a chunk with `finish_reason: "length"` for every choice seen, then `data: [DONE]`.
///
/// It is its own [`MakeMeter`]: each request gets a fresh meter whose prompt estimate is
/// the quote's `upfront.input`.
///
/// See the [module docs](super) for the other meters.
#[derive(Clone, Default)]
pub struct OpenAiTokenMeter {
    prompt_estimate: u64,
    sse: bool,
    /// Estimated output tokens since the last `usage` (or since the start).
    estimate: u64,
    /// The last `usage` reported.
    reported: Option<Usage>,
    id: String,
    model: String,
    created: u64,
    /// Choice indexes seen, bit `i` for index `i`.
    choices: u128,
    /// Joined multi-line data of an event, or a non-streamed body.
    buf: Vec<u8>,
    body_bytes: u64,
    /// The non-streamed body outgrew [`MAX_JSON_BODY`]: it is no longer kept.
    overflowed: bool,
    /// Reads streamed chunks, reusing what the last one shared with the next.
    scanner: Scanner,
}

impl OpenAiTokenMeter {
    /// A meter with no prompt estimate: input is zero until a `usage` arrives.
    pub fn new() -> Self {
        OpenAiTokenMeter::default()
    }

    /// A meter that counts `prompt_tokens` of input until a `usage` arrives.
    pub fn with_prompt_estimate(prompt_tokens: u64) -> Self {
        OpenAiTokenMeter { prompt_estimate: prompt_tokens, ..OpenAiTokenMeter::default() }
    }

    fn usage(&self) -> Usage {
        match self.reported {
            Some(reported) => Usage { input: reported.input, output: reported.output.saturating_add(self.estimate) },
            None => Usage { input: self.prompt_estimate, output: self.estimate },
        }
    }

    /// Meters one streamed `data:` payload.
    fn on_chunk(&mut self, data: &[u8]) {
        if data == b"[DONE]" {
            return;
        }
        // The fast reader answers for the usual shapes; serde reads the rest, the same way.
        match self.scanner.scan(data) {
            Some(chunk) => self.add(chunk),
            None => {
                if let Ok(chunk) = serde_json::from_slice::<Chunk<'_>>(data) {
                    self.add(chunk.summary());
                }
            }
        }
    }

    /// Adds one chunk's usage, and remembers what the cutoff chunk repeats.
    fn add(&mut self, chunk: Summary<'_>) {
        remember(&mut self.id, chunk.id);
        remember(&mut self.model, chunk.model);
        self.created = chunk.created.0.unwrap_or(self.created);
        self.choices |= chunk.choices.indexes;
        // A chunk's own usage covers its own text.
        match chunk.usage.and_then(|usage| usage.usage(self.prompt_estimate)) {
            Some(usage) => (self.reported, self.estimate) = (Some(usage), 0),
            None => self.estimate = self.estimate.saturating_add(estimate_tokens(chunk.choices.text_bytes)),
        }
    }
}

/// What follows `data:` in an event that starts with it, up to the line ends it ends
/// with. When that holds no line break (the fast reader reads none, so whatever it reads
/// holds none), the event is one `data:` line and this is what [`sse_data`] gives for it.
fn data_line(event: &[u8]) -> Option<&[u8]> {
    let rest = event.strip_prefix(b"data:")?;
    let rest = rest.strip_prefix(b" ").unwrap_or(rest);
    let end = rest.iter().rposition(|&b| b != b'\n' && b != b'\r').map_or(0, |last| last + 1);
    Some(&rest[..end])
}

/// Keeps `value` (UTF-8) in `slot` when it changed, reusing the allocation.
fn remember(slot: &mut String, value: Option<&[u8]>) {
    if let Some(Ok(value)) = value.filter(|value| *value != slot.as_bytes()).map(std::str::from_utf8) {
        slot.clear();
        slot.push_str(value);
    }
}

/// About four bytes per token, and at least one token for any text.
fn estimate_tokens(text_bytes: u64) -> u64 {
    if text_bytes == 0 { 0 } else { (text_bytes / 4).max(1) }
}

impl Meter for OpenAiTokenMeter {
    fn on_response(&mut self, head: &response::Parts) -> Usage {
        self.sse = is_event_stream(&head.headers);
        self.usage()
    }

    fn on_data(&mut self, data: &[u8]) -> Usage {
        self.body_bytes = self.body_bytes.saturating_add(u64::try_from(data.len()).unwrap_or(u64::MAX));
        if !self.overflowed {
            if self.buf.len() + data.len() > MAX_JSON_BODY {
                self.overflowed = true;
                self.buf = Vec::new();
            } else {
                self.buf.extend_from_slice(data);
            }
        }
        if self.reported.is_none() {
            self.estimate = self.body_bytes / 4;
        }
        self.usage()
    }

    fn on_event(&mut self, event: &[u8]) -> Usage {
        // Events come only from an event stream, whatever the header said.
        self.sse = true;
        // The usual event, one `data:` line: its chunk read fast, without finding its lines.
        if let Some(line) = data_line(event) {
            if line == b"[DONE]" {
                return self.usage();
            }
            if let Some(chunk) = self.scanner.scan(line) {
                self.add(chunk);
                return self.usage();
            }
        }
        // `buf` is lent out so `on_chunk` can borrow the whole meter.
        let mut buf = mem::take(&mut self.buf);
        if let Some(data) = sse_data(event, &mut buf) {
            self.on_chunk(data);
        }
        self.buf = buf;
        self.usage()
    }

    fn on_end(&mut self) -> Usage {
        if !self.sse && !self.buf.is_empty() {
            let buf = mem::take(&mut self.buf);
            if let Ok(body) = serde_json::from_slice::<Chunk<'_>>(&buf) {
                if let Some(usage) = body.usage.and_then(|usage| usage.usage(self.prompt_estimate)) {
                    (self.reported, self.estimate) = (Some(usage), 0);
                } else if body.error.is_some() {
                    self.estimate = 0;
                }
            }
        }
        self.usage()
    }

    fn cutoff(&self) -> Option<Bytes> {
        if !self.sse {
            return None;
        }
        let mut out = Vec::with_capacity(160 + self.id.len() + self.model.len());
        out.extend_from_slice(br#"data: {"id":"#);
        serde_json::to_writer(&mut out, &self.id).ok()?;
        write!(out, r#","object":"chat.completion.chunk","created":{},"model":"#, self.created).ok()?;
        serde_json::to_writer(&mut out, &self.model).ok()?;
        out.extend_from_slice(br#","choices":["#);
        // At least choice 0, so a cut before the first chunk still ends well-formed.
        let choices = self.choices.max(1);
        for (n, index) in (0..128).filter(|i| choices & (1 << i) != 0).enumerate() {
            let sep = if n == 0 { "" } else { "," };
            write!(out, r#"{sep}{{"index":{index},"delta":{{}},"finish_reason":"length"}}"#).ok()?;
        }
        out.extend_from_slice(b"]}\n\ndata: [DONE]\n\n");
        Some(Bytes::from(out))
    }
}

impl MakeMeter for OpenAiTokenMeter {
    type Meter = OpenAiTokenMeter;

    fn make_meter(&self, _request: &request::Parts, quote: &Quote) -> OpenAiTokenMeter {
        OpenAiTokenMeter::with_prompt_estimate(quote.upfront.input)
    }
}

impl fmt::Debug for OpenAiTokenMeter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiTokenMeter")
            .field("usage", &self.usage())
            .field("reconciled", &self.reported.is_some())
            .field("sse", &self.sse)
            .field("id", &self.id)
            .field("model", &self.model)
            .field("body_bytes", &self.body_bytes)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[path = "openai_tests.rs"]
mod tests;
