//! The JSON reading under the fast chunk reader: tokens, checked as strictly as
//! `serde_json` checks them or more (anything it cannot vouch for is `None`). It reads
//! no line breaks, not even as whitespace.

use std::ops::Range;

use super::chunk::Number;

/// How deep a skipped value may nest.
const SKIP_DEPTH: u8 = 16;

/// A position in a JSON text.
#[derive(Clone, Copy, Debug)]
pub(super) struct Lexer<'a> {
    pub(super) bytes: &'a [u8],
    pub(super) pos: usize,
}

/// Something that reads JSON with a [`Lexer`]: what [`fields`] and [`items`] call back.
pub(super) trait Lex<'a> {
    fn lexer(&mut self) -> &mut Lexer<'a>;
}

impl<'a> Lex<'a> for Lexer<'a> {
    fn lexer(&mut self) -> &mut Lexer<'a> {
        self
    }
}

/// The fields of an object whose `{` was read, or (`after_value`) the rest of one after a
/// field's value: calls `field` with each key, the lexer at its value.
#[inline(always)]
pub(super) fn fields<'a, R: Lex<'a>>(
    r: &mut R,
    after_value: bool,
    mut field: impl FnMut(&mut R, &'a [u8]) -> Option<()>,
) -> Option<()> {
    let l = r.lexer();
    l.ws();
    if (!after_value && l.eat(b'}')) || (after_value && !l.separator(b'}')?) {
        return Some(());
    }
    loop {
        let l = r.lexer();
        l.ws();
        let key = l.key()?;
        l.ws();
        l.open(b':')?;
        l.ws();
        field(r, key)?;
        let l = r.lexer();
        l.ws();
        if !l.separator(b'}')? {
            return Some(());
        }
    }
}

/// The items of an array whose `[` was read, or (`after_item`) the rest of one.
#[inline(always)]
pub(super) fn items<'a, R: Lex<'a>>(
    r: &mut R,
    after_item: bool,
    mut item: impl FnMut(&mut R) -> Option<()>,
) -> Option<()> {
    let l = r.lexer();
    l.ws();
    if (!after_item && l.eat(b']')) || (after_item && !l.separator(b']')?) {
        return Some(());
    }
    loop {
        r.lexer().ws();
        item(r)?;
        let l = r.lexer();
        l.ws();
        if !l.separator(b']')? {
            return Some(());
        }
    }
}

impl<'a> Lexer<'a> {
    /// After a value: `true` for a `,`, `false` for `close`; `None` for anything else.
    #[inline(always)]
    fn separator(&mut self, close: u8) -> Option<bool> {
        let next = self.peek()?;
        self.pos += 1;
        if next == b',' { Some(true) } else { (next == close).then_some(false) }
    }

    #[inline(always)]
    pub(super) fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    #[inline(always)]
    pub(super) fn eat(&mut self, byte: u8) -> bool {
        let hit = self.peek() == Some(byte);
        self.pos += usize::from(hit);
        hit
    }

    #[inline(always)]
    pub(super) fn open(&mut self, byte: u8) -> Option<()> {
        self.eat(byte).then_some(())
    }

    /// JSON whitespace but line breaks (which a `data:` line cannot hold, so a text this
    /// reads is one line; serde reads the others).
    #[inline(always)]
    pub(super) fn ws(&mut self) {
        while let Some(b' ' | b'\t') = self.peek() {
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
    pub(super) fn null(&mut self) -> bool {
        self.literal(b"null").is_some()
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

    /// A string: its decoded UTF-8 length, and whether it had escapes. Strings are the
    /// only place bytes above ASCII may be, and here they are checked to be UTF-8.
    #[inline(always)]
    pub(super) fn string(&mut self) -> Option<(usize, bool)> {
        self.open(b'"')?;
        let (mut len, mut escaped) = (0usize, false);
        loop {
            let plain = plain_run(&self.bytes[self.pos..]);
            self.pos += plain;
            len += plain;
            match self.peek()? {
                b'"' => {
                    self.pos += 1;
                    return Some((len, escaped));
                }
                b'\\' => {
                    self.pos += 1;
                    escaped = true;
                    len += self.escape()?;
                }
                0x80.. => len += self.non_ascii()?,
                // A raw control character.
                _ => return None,
            }
        }
    }

    /// A run of bytes above ASCII, which must be whole UTF-8 characters: its length.
    #[cold]
    fn non_ascii(&mut self) -> Option<usize> {
        let rest = &self.bytes[self.pos..];
        let run = rest.iter().position(u8::is_ascii).unwrap_or(rest.len());
        std::str::from_utf8(&rest[..run]).ok()?;
        self.pos += run;
        Some(run)
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
                let code = hex.iter().try_fold(0, |code, &h| Some(code * 16 + char::from(h).to_digit(16)?))?;
                char::from_u32(code).map(char::len_utf8)
            }
            _ => None,
        }
    }

    /// Where a string the meter keeps (`id`, `model`) is: no escapes; `null` is `None`.
    pub(super) fn plain_str(&mut self) -> Option<Option<Range<usize>>> {
        if self.null() {
            return Some(None);
        }
        let start = self.pos + 1;
        match self.string()? {
            (len, false) => Some(Some(start..start + len)),
            (_, true) => None,
        }
    }

    /// The UTF-8 length of a text string, or 0 for `null`.
    #[inline(always)]
    pub(super) fn text_len(&mut self) -> Option<u64> {
        if self.null() {
            return Some(0);
        }
        self.string().map(|(len, _)| u64::try_from(len).unwrap_or(u64::MAX))
    }

    /// A plain non-negative integer that fits a `u64`, or `null`.
    pub(super) fn number(&mut self) -> Option<Number> {
        if self.null() {
            return Some(Number(None));
        }
        let digits = self.digits();
        let (leading, rest) = digits.split_first()?;
        if (*leading == b'0' && !rest.is_empty()) || matches!(self.peek(), Some(b'.' | b'e' | b'E')) {
            return None;
        }
        let value = digits.iter().try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))?;
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

    /// Skips a value it can vouch for as JSON: nested up to 16 deep, numbers without
    /// exponents (those, and numbers too large for serde's range, are left to serde).
    pub(super) fn skip(&mut self) -> Option<()> {
        self.skip_nested(SKIP_DEPTH)
    }

    fn skip_nested(&mut self, depth: u8) -> Option<()> {
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => {
                self.pos += 1;
                fields(self, false, |l, _| l.skip_nested(depth.checked_sub(1)?))
            }
            b'[' => {
                self.pos += 1;
                items(self, false, |l| l.skip_nested(depth.checked_sub(1)?))
            }
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
                (!matches!(self.peek(), Some(b'e' | b'E'))).then_some(())
            }
            _ => None,
        }
    }
}

/// How many bytes of `s` come before the first `"`, `\`, control character or byte above
/// ASCII, eight bytes at a time.
#[inline(always)]
fn plain_run(s: &[u8]) -> usize {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    // Bit 7 of a byte is set where that byte is (or, above the first one, may be) special.
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH;
    let mut at = 0;
    while let Some(word) = s.get(at..at + 8) {
        let w = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let special = below(w ^ (ONES * u64::from(b'"')), 1)
            | below(w ^ (ONES * u64::from(b'\\')), 1)
            | below(w, 0x20)
            | (w & HIGH);
        if special != 0 {
            return at + special.trailing_zeros() as usize / 8;
        }
        at += 8;
    }
    at + s[at..].iter().position(|&b| b == b'"' || b == b'\\' || !(0x20..0x80).contains(&b)).unwrap_or(s.len() - at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_runs_stop_at_quotes_backslashes_controls_and_non_ascii() {
        let naive = |s: &[u8]| s.iter().position(|&b| b == b'"' || b == b'\\' || !(0x20..0x80).contains(&b));
        let mut cases: Vec<Vec<u8>> = vec![b"".to_vec(), b"abc".to_vec(), "0123456789abcdé\"".into(), b"\x1f".to_vec()];
        for special in [b'"', b'\\', 0, 0x1f, b'\n', 0x80, 0xc3, 0xff] {
            for at in 0..20 {
                let mut s = vec![b'a'; 20];
                s[at] = special;
                s.extend_from_slice(b"\"\\\x01");
                cases.push(s);
            }
        }
        // Bytes just above the specials are plain, DEL too; the first byte above ASCII is not.
        cases.push(vec![b'#', b']', 0x20, 0x21, 0x7f, b'#', b'a', b'b', b'c', 0xa2, 0xdc, 0x80, 0xff, b'"']);
        for s in cases {
            assert_eq!(plain_run(&s), naive(&s).unwrap_or(s.len()), "{s:?}");
        }
    }

    #[test]
    fn strings_count_decoded_utf8_and_refuse_what_json_refuses() {
        let len = |s: &[u8]| Lexer { bytes: s, pos: 0 }.string().map(|(len, _)| len);
        assert_eq!(len(br#""abc""#), Some(3));
        assert_eq!(len(br#""a\n\"\\\/\u00e9\u20ac\u0000""#), Some(1 + 4 + 2 + 3 + 1));
        assert_eq!(len("\"日本\"".as_bytes()), Some(6));
        for bad in
            [&br#""\ud83d\ude00""#[..], br#""\x""#, br#""\u12g4""#, b"\"a\nb\"", b"\"\xff\"", b"\"\xc3\"", b"\"abc"]
        {
            assert_eq!(len(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn skips_json_it_can_vouch_for() {
        let skip = |s: &[u8]| {
            let mut l = Lexer { bytes: s, pos: 0 };
            l.skip().filter(|()| l.pos == s.len())
        };
        for good in [&b"null"[..], b"true", b"-1.5", b"0", br#"{"a":[1,{"b":null}],"c":"d"}"#, b"[ ]", b"{ }"] {
            assert_eq!(skip(good), Some(()), "{}", String::from_utf8_lossy(good));
        }
        let deep = format!("{}1{}", "[".repeat(17), "]".repeat(17));
        for bad in [&b"01"[..], b"1e5", b"1.", b"-", b"[1,]", b"{\"a\"}", b"nul", deep.as_bytes()] {
            assert_eq!(skip(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
