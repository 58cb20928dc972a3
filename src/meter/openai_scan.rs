//! A fast reader for the usual shapes of a streamed chunk, exact where it answers.
//!
//! [`scan`] reads a chunk in one pass, without serde, into the same [`Chunk`] that
//! `serde_json::from_slice` gives, and answers `None` for anything outside the shapes it
//! knows; the meter then falls back to serde. So it only has to be right where it answers:
//!
//! - the whole input is valid UTF-8, and it is one JSON object (whitespace around it);
//! - object keys have no escapes, and no field the meter reads appears twice (serde's
//!   derive refuses duplicate fields);
//! - `id` and `model` are strings without escapes, or `null`; `created`, `index`,
//!   `prompt_tokens` and `completion_tokens` are plain non-negative integers, or `null`;
//! - `choices`, `tool_calls` are arrays or `null`, their items objects or `null`;
//!   `delta`, `function`, `usage` are objects or `null`; text fields are strings or `null`;
//! - text strings may hold escapes (their decoded UTF-8 length is counted) except
//!   surrogate `\u` escapes; raw control characters are refused, as in JSON;
//! - values it skips are JSON up to 16 levels deep, numbers without exponents.

use std::borrow::Cow;

use serde::de::IgnoredAny;

use crate::meter::openai_chunk::{Choices, Chunk, Number, Str, UsageFields};

/// How deep a skipped value may nest.
const SKIP_DEPTH: u8 = 16;

/// `data` read as serde reads it into a [`Chunk`], or `None` when it is outside the shapes
/// this reader knows (see the [module docs](self)).
pub(super) fn scan(data: &[u8]) -> Option<Chunk<'_>> {
    let text = std::str::from_utf8(data).ok()?;
    let mut r = Reader { text, bytes: data, pos: 0 };
    let mut chunk = Chunk::default();
    let mut seen = Seen::default();
    r.object(|r, key| {
        match key {
            b"id" => {
                seen.once(0)?;
                chunk.id = r.plain_str()?;
            }
            b"model" => {
                seen.once(1)?;
                chunk.model = r.plain_str()?;
            }
            b"created" => {
                seen.once(2)?;
                chunk.created = r.number()?;
            }
            b"choices" => {
                seen.once(3)?;
                chunk.choices = r.choices()?;
            }
            b"usage" => {
                seen.once(4)?;
                chunk.usage = if r.null() { None } else { Some(r.usage()?) };
            }
            b"error" => {
                seen.once(5)?;
                chunk.error = if r.null() {
                    None
                } else {
                    r.skip(SKIP_DEPTH)?;
                    Some(IgnoredAny)
                };
            }
            _ => r.skip(SKIP_DEPTH)?,
        }
        Some(())
    })?;
    r.ws();
    (r.pos == data.len()).then_some(chunk)
}

/// Which fields of one object were read, to refuse duplicates as serde does.
#[derive(Default)]
struct Seen(u8);

impl Seen {
    fn once(&mut self, bit: u8) -> Option<()> {
        let first = self.0 & (1 << bit) == 0;
        self.0 |= 1 << bit;
        first.then_some(())
    }
}

struct Reader<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline(always)]
    fn eat(&mut self, byte: u8) -> bool {
        let hit = self.peek() == Some(byte);
        self.pos += usize::from(hit);
        hit
    }

    /// JSON whitespace, as serde_json reads it.
    #[inline(always)]
    fn ws(&mut self) {
        while let Some(b' ' | b'\n' | b'\t' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    #[inline(always)]
    fn literal(&mut self, word: &[u8]) -> Option<()> {
        let end = self.pos + word.len();
        (self.bytes.get(self.pos..end)? == word).then(|| self.pos = end)
    }

    /// Eats a `null` if one is next.
    #[inline(always)]
    fn null(&mut self) -> bool {
        self.literal(b"null").is_some()
    }

    /// An object (the next value): calls `field` with each key, the reader at its value.
    fn object(&mut self, mut field: impl FnMut(&mut Self, &'a [u8]) -> Option<()>) -> Option<()> {
        self.ws();
        if !self.eat(b'{') {
            return None;
        }
        self.ws();
        if self.eat(b'}') {
            return Some(());
        }
        loop {
            self.ws();
            let key = self.key()?;
            self.ws();
            if !self.eat(b':') {
                return None;
            }
            self.ws();
            field(self, key)?;
            self.ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An array (the next value): calls `item` with the reader at each item.
    fn array(&mut self, mut item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        if !self.eat(b'[') {
            return None;
        }
        self.ws();
        if self.eat(b']') {
            return Some(());
        }
        loop {
            self.ws();
            item(self)?;
            self.ws();
            match self.peek()? {
                b',' => self.pos += 1,
                b']' => {
                    self.pos += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A key without escapes.
    #[inline(always)]
    fn key(&mut self) -> Option<&'a [u8]> {
        let start = self.pos + 1;
        match self.string()? {
            (len, false) => Some(&self.bytes[start..start + len]),
            (_, true) => None,
        }
    }

    /// A string: its decoded UTF-8 length, and whether it had escapes.
    #[inline(always)]
    fn string(&mut self) -> Option<(usize, bool)> {
        if !self.eat(b'"') {
            return None;
        }
        let (mut len, mut escaped) = (0usize, false);
        loop {
            let plain = plain_run(&self.bytes[self.pos..]);
            self.pos += plain;
            len += plain;
            let &b = self.bytes.get(self.pos)?;
            self.pos += 1;
            match b {
                b'"' => return Some((len, escaped)),
                b'\\' => {
                    escaped = true;
                    len += self.escape()?;
                }
                // A raw control character.
                _ => return None,
            }
        }
    }

    /// The escape after a `\`: the UTF-8 length of what it stands for. Surrogates (which
    /// must pair up) are left to serde.
    #[cold]
    fn escape(&mut self) -> Option<usize> {
        let &b = self.bytes.get(self.pos)?;
        self.pos += 1;
        match b {
            b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(1),
            b'u' => {
                let hex = self.bytes.get(self.pos..self.pos + 4)?;
                self.pos += 4;
                let mut code = 0u32;
                for &h in hex {
                    code = code * 16 + char::from(h).to_digit(16)?;
                }
                char::from_u32(code).map(char::len_utf8)
            }
            _ => None,
        }
    }

    /// A string the meter keeps (`id`, `model`): without escapes, or `null`.
    #[inline(always)]
    fn plain_str(&mut self) -> Option<Str<'a>> {
        if self.null() {
            return Some(Str(None));
        }
        let start = self.pos + 1;
        match self.string()? {
            (len, false) => Some(Str(Some(Cow::Borrowed(&self.text[start..start + len])))),
            (_, true) => None,
        }
    }

    /// The UTF-8 length of a text string, or 0 for `null`.
    #[inline(always)]
    fn text_len(&mut self) -> Option<u64> {
        if self.null() {
            return Some(0);
        }
        self.string().map(|(len, _)| u64::try_from(len).unwrap_or(u64::MAX))
    }

    /// A plain non-negative integer that fits a `u64`, or `null`.
    #[inline(always)]
    fn number(&mut self) -> Option<Number> {
        if self.null() {
            return Some(Number(None));
        }
        let digits = self.digits();
        let (leading, rest) = digits.split_first()?;
        if *leading == b'0' && !rest.is_empty() {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = self.peek() {
            return None;
        }
        let mut value = 0u64;
        for &d in digits {
            value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        }
        Some(Number(Some(value)))
    }

    #[inline(always)]
    fn digits(&mut self) -> &'a [u8] {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        &self.bytes[start..self.pos]
    }

    /// Skips any value this reader can vouch for as JSON (see the [module docs](self)).
    fn skip(&mut self, depth: u8) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(|r, _| r.skip(depth.checked_sub(1)?)),
            b'[' => self.array(|r| r.skip(depth.checked_sub(1)?)),
            b'n' => self.literal(b"null"),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'-' | b'0'..=b'9' => {
                self.eat(b'-');
                let whole = self.digits();
                if whole.is_empty() || whole.len() > 18 || (whole[0] == b'0' && whole.len() > 1) {
                    return None;
                }
                if self.eat(b'.') && !(1..=18).contains(&self.digits().len()) {
                    return None;
                }
                // Exponents (and numbers too large for serde's range) are left to serde.
                (!matches!(self.peek(), Some(b'e' | b'E'))).then_some(())
            }
            _ => None,
        }
    }

    fn choices(&mut self) -> Option<Choices> {
        let mut choices = Choices::default();
        if self.null() {
            return Some(choices);
        }
        self.array(|r| {
            if r.null() {
                return Some(());
            }
            let (index, text) = r.choice()?;
            if let Ok(index @ 0..128) = u8::try_from(index.0.unwrap_or(0)) {
                choices.indexes |= 1 << index;
            }
            choices.text_bytes = choices.text_bytes.saturating_add(text);
            Some(())
        })?;
        Some(choices)
    }

    /// One choice: its index and its delta's text bytes.
    fn choice(&mut self) -> Option<(Number, u64)> {
        let (mut index, mut text, mut seen) = (Number(None), 0, Seen::default());
        self.object(|r, key| {
            match key {
                b"index" => {
                    seen.once(0)?;
                    index = r.number()?;
                }
                b"delta" => {
                    seen.once(1)?;
                    text = if r.null() { 0 } else { r.delta()? };
                }
                _ => r.skip(SKIP_DEPTH)?,
            }
            Some(())
        })?;
        Some((index, text))
    }

    /// A delta's text bytes, summed as the serde reader sums them.
    fn delta(&mut self) -> Option<u64> {
        let (mut text, mut tool_calls, mut seen) = ([0u64; 4], 0, Seen::default());
        self.object(|r, key| {
            let slot = match key {
                b"content" => 0,
                b"reasoning_content" => 1,
                b"reasoning" => 2,
                b"refusal" => 3,
                b"tool_calls" => {
                    seen.once(4)?;
                    tool_calls = r.tool_calls()?;
                    return Some(());
                }
                _ => return r.skip(SKIP_DEPTH),
            };
            seen.once(slot)?;
            text[usize::from(slot)] = r.text_len()?;
            Some(())
        })?;
        Some(text.iter().fold(tool_calls, |sum, t| sum.saturating_add(*t)))
    }

    /// The summed `function.name` and `function.arguments` bytes of `tool_calls`.
    fn tool_calls(&mut self) -> Option<u64> {
        let mut total = 0u64;
        if self.null() {
            return Some(total);
        }
        self.array(|r| {
            if r.null() {
                return Some(());
            }
            let mut seen = Seen::default();
            r.object(|r, key| {
                if key != b"function" {
                    return r.skip(SKIP_DEPTH);
                }
                seen.once(0)?;
                if r.null() {
                    return Some(());
                }
                let (mut name, mut arguments, mut seen) = (0, 0, Seen::default());
                r.object(|r, key| match key {
                    b"name" => seen.once(0).and_then(|()| r.text_len()).map(|len| name = len),
                    b"arguments" => seen.once(1).and_then(|()| r.text_len()).map(|len| arguments = len),
                    _ => r.skip(SKIP_DEPTH),
                })?;
                total = total.saturating_add(name).saturating_add(arguments);
                Some(())
            })
        })?;
        Some(total)
    }

    fn usage(&mut self) -> Option<UsageFields> {
        let (mut usage, mut seen) = (UsageFields::default(), Seen::default());
        self.object(|r, key| {
            match key {
                b"prompt_tokens" => {
                    seen.once(0)?;
                    usage.prompt_tokens = r.number()?;
                }
                b"completion_tokens" => {
                    seen.once(1)?;
                    usage.completion_tokens = r.number()?;
                }
                _ => r.skip(SKIP_DEPTH)?,
            }
            Some(())
        })?;
        Some(usage)
    }
}

/// How many bytes of `s` come before the first `"`, `\\` or control character.
#[inline(always)]
pub(super) fn plain_run(s: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    // Bit 7 of a byte is set where that byte is (or, above the first one, may be) special.
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH;
    let mut at = 0;
    while let Some(word) = s.get(at..at + 8) {
        let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let special = below(w ^ (ONES * u64::from(b'"')), 1) | below(w ^ (ONES * u64::from(b'\\')), 1) | below(w, 0x20);
        if special != 0 {
            return at + special.trailing_zeros() as usize / 8;
        }
        at += 8;
    }
    at + s[at..].iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).unwrap_or(s.len() - at)
}
