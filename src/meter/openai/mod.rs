//! The OpenAI chat-completions token meter.

use std::fmt;
use std::io::Write;
use std::mem;

use bytes::Bytes;
use http::{request, response};

use self::chunk::{Chunk, Summary};
use self::scan::Scanner;
use super::sse::is_event_stream;
use super::{MakeMeter, Meter, sse_data};
use crate::amount::{Quote, Usage};

mod chunk;
mod json;
mod scan;

/// How much of a non-streamed body is kept to read its `usage` at the end.
const MAX_JSON_BODY: usize = 8 << 20;

/// Counts OpenAI chat-completion tokens (unit `llm_token`) so that nothing goes out
/// before it is paid for: an upper bound while the response streams, lowered to the
/// provider's `usage` when it arrives.
///
/// - **Input** is the quote's estimated prompt tokens (`quote.upfront.input`) until a
///   `usage` object gives `prompt_tokens`.
/// - **Visible output** is bounded by its bytes: a token is at least one byte of the text
///   it stands for, so a streamed chunk counts **one token per byte** of every choice's
///   delta `content`, `reasoning_content`, `reasoning`, `refusal` and tool-call
///   `function.name` / `function.arguments` (UTF-8, escapes decoded). A non-streamed body
///   counts one token per body byte.
/// - **Hidden output** (reasoning tokens a provider bills but does not stream) cannot be
///   seen, so it is allowed for before the first content goes out: from the first chunk
///   with a choice on, the output count is at least all the visible text so far plus an
///   allowance of [`hidden_output`] tokens, by default the whole output cap of the request
///   ([`Quote::max_output`](crate::Quote), else [`max_output`]). The allowance never takes
///   the count above that cap (visible text may: an upstream that overruns the cap still
///   pays its way). With neither a cap nor an allowance, hidden tokens show only in the
///   final `usage`, and the chunk carrying it waits until they are paid for.
/// - **`usage`**: a chunk with a non-null `usage` (OpenAI's final `choices: []` chunk,
///   llama.cpp's `finish_reason` chunk, vLLM's running usage in every chunk) counts its
///   `prompt_tokens` / `completion_tokens`, and chunks after it add to those; the count is
///   the larger of that and the bound above, so a `usage` above what was covered waits to
///   be paid. When the body ends the allowance goes, and the charge comes down to the last
///   `usage`: it only ever lowers what was covered while the content went out. Without any
///   `usage` the bound stands (ask the provider for it: `stream_options:
///   {"include_usage": true}`).
/// - A **non-streamed** body (`stream: false`) is kept (up to 8 MiB) and its `usage` read
///   at the end, where it can only lower the count (the body has gone out by then); an
///   `{"error": ...}` body has no output. `data: [DONE]`, `{"error": ...}` frames,
///   comments and data that is not a JSON object are free.
///
/// When the budget stops a stream, [`Meter::cutoff`] ends it the way a `max_tokens` limit
/// would: a chunk with `finish_reason: "length"` for every choice seen, then `data: [DONE]`.
///
/// It is its own [`MakeMeter`]: each request gets a fresh meter whose prompt estimate is
/// the quote's `upfront.input` and whose cap is the quote's `max_output`.
///
/// ```
/// use tollgate::meter::OpenAiTokenMeter;
///
/// // A deployment that knows its models reason for at most 2,000 tokens, and caps
/// // requests that name no `max_tokens` at 8,192.
/// let meter = OpenAiTokenMeter::new().hidden_output(2_000).max_output(8_192);
/// # let _ = meter;
/// ```
///
/// See the [module docs](super) for the other meters.
///
/// [`hidden_output`]: OpenAiTokenMeter::hidden_output
/// [`max_output`]: OpenAiTokenMeter::max_output
#[derive(Clone, Default)]
pub struct OpenAiTokenMeter {
    prompt_estimate: u64,
    /// The allowance for hidden output; `None`: the cap, if any.
    hidden: Option<u64>,
    /// The request's output cap.
    max_output: Option<u64>,
    sse: bool,
    /// Visible output bytes since the last `usage` (or since the start): an upper bound
    /// of their tokens.
    visible: u64,
    /// Visible output bytes of the whole response.
    visible_total: u64,
    /// A choice has been seen: output may have been generated, the allowance applies.
    started: bool,
    /// The last `usage` reported.
    reported: Option<Usage>,
    /// The final count, once the body ended.
    finished: Option<Usage>,
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

    /// Allows for at most `tokens` output tokens a response may bill without streaming
    /// them (hidden reasoning), paid for before its first content goes out. The default is
    /// the request's whole output cap; `0` suits models that show everything they bill.
    pub fn hidden_output(mut self, tokens: u64) -> Self {
        self.hidden = Some(tokens);
        self
    }

    /// The output cap of requests whose quote names none (say, the model's own limit on
    /// output tokens); see [`Quote::max_output`](crate::Quote).
    pub fn max_output(mut self, tokens: u64) -> Self {
        self.max_output = Some(tokens);
        self
    }

    /// The count so far: what was reported and seen since, raised to what the hidden
    /// allowance may still add. Two bounds hold for the whole output, if hidden tokens stay
    /// within the allowance: the last report plus the text since plus the allowance, and
    /// all the text plus the allowance; the cap bounds both.
    fn usage(&self) -> Usage {
        let seen = self.seen();
        if !self.started {
            return seen;
        }
        let allowance = self.hidden.or(self.max_output).unwrap_or(0);
        let bound = seen.output.min(self.visible_total).saturating_add(allowance);
        let bound = self.max_output.map_or(bound, |cap| bound.min(cap));
        Usage { output: seen.output.max(bound), ..seen }
    }

    /// What was reported and seen since, without the allowance.
    fn seen(&self) -> Usage {
        match self.reported {
            Some(reported) => Usage { input: reported.input, output: reported.output.saturating_add(self.visible) },
            None => Usage { input: self.prompt_estimate, output: self.visible },
        }
    }

    /// The count once the body ended: the allowance goes, and a `usage` can only lower it.
    fn final_usage(&mut self) -> Usage {
        if self.sse {
            // The last `usage` is final: nothing is left for the allowance to cover.
            return if self.reported.is_some() { self.seen() } else { self.usage() };
        }
        let bound = self.usage();
        let buf = mem::take(&mut self.buf);
        let Ok(body) = serde_json::from_slice::<Chunk<'_>>(&buf) else { return bound };
        match body.usage.and_then(|usage| usage.usage(self.prompt_estimate)) {
            // The body has gone out: its `usage` can lower the count, never raise it.
            Some(usage) => Usage { input: usage.input.min(bound.input), output: usage.output.min(bound.output) },
            None if body.error.is_some() => Usage { output: 0, ..bound },
            None => bound,
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
        self.started |= chunk.choices.indexes != 0;
        // A chunk's own usage covers its own text.
        match chunk.usage.and_then(|usage| usage.usage(self.prompt_estimate)) {
            Some(usage) => (self.reported, self.visible) = (Some(usage), 0),
            None => self.visible = self.visible.saturating_add(chunk.choices.text_bytes),
        }
        self.visible_total = self.visible_total.saturating_add(chunk.choices.text_bytes);
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
            self.visible = self.body_bytes;
        }
        self.visible_total = self.body_bytes;
        self.started |= !data.is_empty();
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
        if let Some(finished) = self.finished {
            return finished;
        }
        let finished = self.final_usage();
        self.finished = Some(finished);
        finished
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
        OpenAiTokenMeter {
            prompt_estimate: quote.upfront.input,
            hidden: self.hidden,
            max_output: quote.max_output.or(self.max_output),
            ..OpenAiTokenMeter::default()
        }
    }
}

impl fmt::Debug for OpenAiTokenMeter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiTokenMeter")
            .field("usage", &self.usage())
            .field("reconciled", &self.reported.is_some())
            .field("hidden", &self.hidden)
            .field("max_output", &self.max_output)
            .field("sse", &self.sse)
            .field("id", &self.id)
            .field("model", &self.model)
            .field("body_bytes", &self.body_bytes)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
