//! A fast reader for the usual shapes of a streamed chunk, exact where it answers.
//!
//! [`Scanner::scan`] reads a chunk in one pass, without serde, into the same [`Summary`]
//! that `serde_json::from_slice` into a [`Chunk`] gives, and answers `None` for anything
//! outside the shapes it knows (the meter then asks serde). So it only has to be right
//! where it answers:
//!
//! - the input is valid UTF-8 and one JSON object on one line (no line breaks, not even
//!   as whitespace); keys have no escapes, and no field the meter reads appears twice in
//!   one object (serde's derive refuses that);
//! - `id`, `model` are strings without escapes or `null`; `created`, `index` and the
//!   token counts are plain non-negative integers that fit a `u64`, or `null`;
//! - `choices`, `tool_calls` are arrays or `null`, their items objects or `null`; `delta`,
//!   `function`, `usage` are objects or `null`; text fields are strings or `null`;
//! - text may hold escapes (their decoded UTF-8 length is counted), but not surrogate
//!   `\u` escapes; raw control characters are refused, as in JSON;
//! - values it skips are JSON nested up to 16 deep, numbers without exponents
//!   (see [`json`]).
//!
//! Chunks of one stream differ little: usually only in their first delta text (and in
//! OpenAI's random `obfuscation` string). The scanner keeps the bytes before that text and
//! its state there, so the next chunk with the same leading bytes is read from that point
//! on: the state at a point depends only on the bytes before it. It also keeps the bytes
//! after the text and what the chunk read as: a next chunk with the same bytes after its
//! text (but perhaps another string in the last skipped top-level field) reads the same
//! but for the text's length, which only adds up.

use std::ops::Range;

#[cfg(doc)]
use super::chunk::Chunk;
use super::chunk::{Choices, Number, Summary, UsageFields};
use super::json::{Lex, Lexer, fields, items};

/// Reads chunks of one stream; remembers where the last one's delta text began.
#[derive(Clone, Debug, Default)]
pub(super) struct Scanner {
    /// The bytes of the last chunk read up to its first delta text value.
    prefix: Vec<u8>,
    /// The reader's state at the end of `prefix` (none yet: `None`).
    state: Option<State>,
    /// What followed that value in the last chunk read with this prefix, and what that
    /// chunk read as: a chunk that differs from it only in that value reads the same but
    /// for the value's length.
    tail: Vec<u8>,
    last: Option<Last>,
}

/// What has been read so far: one entry per level of the chunk's known structure.
#[derive(Clone, Debug, Default)]
struct State {
    id: Option<Range<usize>>,
    model: Option<Range<usize>>,
    created: Number,
    usage: Option<UsageFields>,
    top_seen: Seen,
    choices: Choices,
    /// The choice being read: its index, its seen fields.
    index: Number,
    choice_seen: Seen,
    choice_text: u64,
    /// The delta being read: content, reasoning_content, reasoning, refusal; tool calls.
    text: [u64; 4],
    tool_calls: u64,
    delta_seen: Seen,
    /// The tool call being read, and its function's name and arguments.
    tool_seen: Seen,
    function: [u64; 2],
    function_seen: Seen,
    /// The value the saved prefix ends at.
    point: Point,
}

/// A text value the saved prefix may end at: a delta text slot, or a function's.
#[derive(Clone, Copy, Debug)]
enum Point {
    Text(usize),
    Function(usize),
}

impl Default for Point {
    fn default() -> Self {
        Point::Text(0)
    }
}

/// A chunk read: a [`Summary`] with `id` and `model` as ranges of the chunk.
#[derive(Clone, Debug)]
struct Read {
    id: Option<Range<usize>>,
    model: Option<Range<usize>>,
    created: Number,
    choices: Choices,
    usage: Option<UsageFields>,
}

impl Read {
    fn summary<'a>(&self, data: &'a [u8]) -> Summary<'a> {
        Summary {
            id: self.id.clone().map(|range| &data[range]),
            model: self.model.clone().map(|range| &data[range]),
            created: self.created,
            choices: self.choices,
            usage: self.usage,
        }
    }
}

/// The last chunk read with the saved prefix.
#[derive(Clone, Debug)]
struct Last {
    read: Read,
    /// Where the value at the saved point ended, and its text length.
    value_end: usize,
    text: u64,
    /// The last string value of a top-level field the meter skips (OpenAI's random
    /// `obfuscation`), quotes included, as a range of the tail.
    hole: Option<Range<usize>>,
}

impl Scanner {
    /// `data` read as serde reads it into a [`Chunk`], or `None` when it is outside the
    /// shapes this reader knows (see the [module docs](self)).
    pub(super) fn scan<'a>(&mut self, data: &'a [u8]) -> Option<Summary<'a>> {
        if let Some(state) = self.state.as_ref().filter(|_| data.len() > self.prefix.len()) {
            if data.starts_with(&self.prefix) {
                let mut value = Lexer { bytes: data, pos: self.prefix.len() };
                let text = value.text_len()?;
                let value_end = value.pos;
                if let Some(read) = self.reuse(data, value_end, text) {
                    return Some(read.summary(data));
                }
                let mut r = Reader::new(data, value_end, state.clone(), Capture::Off);
                match r.st.point {
                    Point::Text(slot) => r.st.text[slot] = text,
                    Point::Function(slot) => r.st.function[slot] = text,
                }
                let read = r.resume()?;
                self.keep(data, Last { read, value_end, text, hole: r.hole });
                return self.last.as_ref().map(|last| last.read.summary(data));
            }
        }
        let mut r = Reader::new(data, 0, State::default(), Capture::Armed);
        r.lex.ws();
        r.lex.open(b'{')?;
        fields(&mut r, false, Reader::top_field)?;
        let read = r.finish()?;
        let summary = read.summary(data);
        if let Capture::Taken { at, state, value_end, text, .. } = r.capture {
            self.prefix.clear();
            self.prefix.extend_from_slice(&data[..at]);
            self.state = Some(*state);
            self.keep(data, Last { read, value_end, text, hole: r.hole });
        }
        Some(summary)
    }

    /// Keeps `last`, and its tail from `data`.
    fn keep(&mut self, data: &[u8], mut last: Last) {
        self.tail.clear();
        self.tail.extend_from_slice(&data[last.value_end..]);
        last.hole = last
            .hole
            .filter(|hole| hole.start >= last.value_end)
            .map(|hole| hole.start - last.value_end..hole.end - last.value_end);
        self.last = Some(last);
    }

    /// What `data` reads as when, past the value at the saved point (ending at `value_end`,
    /// `text` bytes of text), it has the last chunk's tail, or that tail with another
    /// string in its hole: the same as the last chunk, but for the value's length. Far
    /// below `u64::MAX` no sum saturates, so the text differs by the value's alone.
    fn reuse(&self, data: &[u8], value_end: usize, text: u64) -> Option<Read> {
        const EXACT: u64 = 1 << 62;
        let last = self.last.as_ref()?;
        if last.read.choices.text_bytes >= EXACT || text >= EXACT {
            return None;
        }
        let (old, new) = (&self.tail[..], &data[value_end..]);
        // Tail positions from `moved_from` on moved with the hole's new length.
        let moved_from = if old == new {
            old.len()
        } else {
            let hole = last.hole.clone()?;
            let (before, after) = (&old[..hole.start], &old[hole.end..]);
            if new.len() < before.len() + after.len() || !new.starts_with(before) || !new.ends_with(after) {
                return None;
            }
            let mut string = Lexer { bytes: data, pos: value_end + before.len() };
            string.string()?;
            if string.pos != data.len() - after.len() {
                return None;
            }
            hole.end
        };
        let moved = |range: &Option<Range<usize>>| {
            let range = range.clone()?;
            if range.start < last.value_end {
                return Some(range);
            }
            let at = |p: usize| {
                let p = p - last.value_end;
                value_end + if p >= moved_from { p + new.len() - old.len() } else { p }
            };
            Some(at(range.start)..at(range.end))
        };
        let mut read = Read { id: moved(&last.read.id), model: moved(&last.read.model), ..last.read.clone() };
        read.choices.text_bytes = read.choices.text_bytes - last.text + text;
        Some(read)
    }
}

#[cfg(test)]
impl Scanner {
    /// The saved prefix: the bytes a chunk must start with to be read from its end.
    pub(super) fn saved_prefix(&self) -> Option<&[u8]> {
        self.state.as_ref().map(|_| &self.prefix[..])
    }
}

/// Which fields of one object were read, to refuse duplicates as serde does.
#[derive(Clone, Copy, Debug, Default)]
struct Seen(u8);

impl Seen {
    fn once(&mut self, bit: usize) -> Option<()> {
        let first = self.0 & (1 << bit) == 0;
        self.0 |= 1 << bit;
        first.then_some(())
    }
}

/// Whether a reader saves the point where the first text value (a string, or else a
/// `null`) of a delta or its tool calls begins.
enum Capture {
    Off,
    Armed,
    /// Saved: where the value began, the state there, where it ended, its text length,
    /// whether it was `null` (a later string is saved instead).
    Taken {
        at: usize,
        state: Box<State>,
        value_end: usize,
        text: u64,
        null: bool,
    },
}

/// Reads the structure of a chunk that the meter knows, one level of [`State`] each.
struct Reader<'a> {
    lex: Lexer<'a>,
    st: State,
    capture: Capture,
    /// The last string value of a top-level field skipped.
    hole: Option<Range<usize>>,
}

impl<'a> Lex<'a> for Reader<'a> {
    fn lexer(&mut self) -> &mut Lexer<'a> {
        &mut self.lex
    }
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], pos: usize, st: State, capture: Capture) -> Self {
        Reader { lex: Lexer { bytes, pos }, st, capture, hole: None }
    }

    /// Reads on from the saved point once its value is read: the rest of each level.
    fn resume(&mut self) -> Option<Read> {
        if let Point::Function(_) = self.st.point {
            fields(self, true, Self::function_field)?;
            self.end_function();
            fields(self, true, Self::tool_field)?;
            items(self, true, Self::tool_call)?;
        }
        fields(self, true, Self::delta_field)?;
        self.end_delta();
        fields(self, true, Self::choice_field)?;
        self.end_choice();
        items(self, true, Self::choice)?;
        fields(self, true, Self::top_field)?;
        self.finish()
    }

    /// The chunk, once the top-level object has been read.
    fn finish(&mut self) -> Option<Read> {
        self.lex.ws();
        if self.lex.pos != self.lex.bytes.len() {
            return None;
        }
        let st = &self.st;
        Some(Read {
            id: st.id.clone(),
            model: st.model.clone(),
            created: st.created,
            choices: st.choices,
            usage: st.usage,
        })
    }

    fn top_field(&mut self, key: &[u8]) -> Option<()> {
        match key {
            b"id" => {
                self.st.top_seen.once(0)?;
                self.st.id = self.lex.plain_str()?;
            }
            b"model" => {
                self.st.top_seen.once(1)?;
                self.st.model = self.lex.plain_str()?;
            }
            b"created" => {
                self.st.top_seen.once(2)?;
                self.st.created = self.lex.number()?;
            }
            b"choices" => {
                self.st.top_seen.once(3)?;
                if !self.lex.null() {
                    self.lex.open(b'[')?;
                    items(self, false, Self::choice)?;
                }
            }
            b"usage" => {
                self.st.top_seen.once(4)?;
                self.st.usage = if self.lex.null() { None } else { Some(self.usage()?) };
            }
            // The meter does not read it, but serde refuses it twice.
            b"error" => {
                self.st.top_seen.once(5)?;
                self.lex.skip()?;
            }
            _ => {
                let start = self.lex.pos;
                self.lex.skip()?;
                if self.lex.bytes[start] == b'"' {
                    self.hole = Some(start..self.lex.pos);
                }
            }
        }
        Some(())
    }

    /// One item of `choices`.
    fn choice(&mut self) -> Option<()> {
        if self.lex.null() {
            return Some(());
        }
        (self.st.index, self.st.choice_seen, self.st.choice_text) = (Number(None), Seen::default(), 0);
        self.lex.open(b'{')?;
        fields(self, false, Self::choice_field)?;
        self.end_choice();
        Some(())
    }

    fn end_choice(&mut self) {
        let choices = &mut self.st.choices;
        if let Ok(index @ 0..128) = u8::try_from(self.st.index.0.unwrap_or(0)) {
            choices.indexes |= 1 << index;
        }
        choices.text_bytes = choices.text_bytes.saturating_add(self.st.choice_text);
    }

    fn choice_field(&mut self, key: &[u8]) -> Option<()> {
        match key {
            b"index" => {
                self.st.choice_seen.once(0)?;
                self.st.index = self.lex.number()?;
            }
            b"delta" => {
                self.st.choice_seen.once(1)?;
                if !self.lex.null() {
                    (self.st.text, self.st.tool_calls, self.st.delta_seen) = ([0; 4], 0, Seen::default());
                    self.lex.open(b'{')?;
                    fields(self, false, Self::delta_field)?;
                    self.end_delta();
                }
            }
            _ => self.lex.skip()?,
        }
        Some(())
    }

    fn end_delta(&mut self) {
        self.st.choice_text = self.st.text.iter().fold(self.st.tool_calls, |sum, t| sum.saturating_add(*t));
    }

    fn delta_field(&mut self, key: &[u8]) -> Option<()> {
        let slot = match key {
            b"content" => 0,
            b"reasoning_content" => 1,
            b"reasoning" => 2,
            b"refusal" => 3,
            b"tool_calls" => {
                self.st.delta_seen.once(4)?;
                if !self.lex.null() {
                    self.lex.open(b'[')?;
                    items(self, false, Self::tool_call)?;
                }
                return Some(());
            }
            _ => return self.lex.skip(),
        };
        self.st.delta_seen.once(slot)?;
        self.st.text[slot] = self.text_at(Point::Text(slot))?;
        Some(())
    }

    /// One item of `tool_calls`: its `function.name` and `function.arguments` bytes count.
    fn tool_call(&mut self) -> Option<()> {
        if self.lex.null() {
            return Some(());
        }
        self.st.tool_seen = Seen::default();
        self.lex.open(b'{')?;
        fields(self, false, Self::tool_field)
    }

    fn tool_field(&mut self, key: &[u8]) -> Option<()> {
        if key != b"function" {
            return self.lex.skip();
        }
        self.st.tool_seen.once(0)?;
        if !self.lex.null() {
            (self.st.function, self.st.function_seen) = ([0; 2], Seen::default());
            self.lex.open(b'{')?;
            fields(self, false, Self::function_field)?;
            self.end_function();
        }
        Some(())
    }

    fn end_function(&mut self) {
        let [name, arguments] = self.st.function;
        self.st.tool_calls = self.st.tool_calls.saturating_add(name).saturating_add(arguments);
    }

    fn function_field(&mut self, key: &[u8]) -> Option<()> {
        let slot = match key {
            b"name" => 0,
            b"arguments" => 1,
            _ => return self.lex.skip(),
        };
        self.st.function_seen.once(slot)?;
        self.st.function[slot] = self.text_at(Point::Function(slot))?;
        Some(())
    }

    /// The length of a text value at `point`, saving the point first when it is the one
    /// a reader saves (see [`Capture`]).
    fn text_at(&mut self, point: Point) -> Option<u64> {
        let save = match self.capture {
            Capture::Armed => true,
            Capture::Taken { null, .. } => null && self.lex.peek() == Some(b'"'),
            Capture::Off => false,
        };
        if !save {
            return self.lex.text_len();
        }
        self.st.point = point;
        let (at, state, null) = (self.lex.pos, Box::new(self.st.clone()), self.lex.peek() == Some(b'n'));
        let text = self.lex.text_len()?;
        self.capture = Capture::Taken { at, state, value_end: self.lex.pos, text, null };
        Some(text)
    }

    fn usage(&mut self) -> Option<UsageFields> {
        let (mut usage, mut seen) = (UsageFields::default(), Seen::default());
        self.lex.open(b'{')?;
        fields(&mut self.lex, false, |l, key| {
            match key {
                b"prompt_tokens" => {
                    seen.once(0)?;
                    usage.prompt_tokens = l.number()?;
                }
                b"completion_tokens" => {
                    seen.once(1)?;
                    usage.completion_tokens = l.number()?;
                }
                _ => l.skip()?,
            }
            Some(())
        })?;
        Some(usage)
    }
}

#[cfg(test)]
mod tests;
