//! Reading RFC 9110 auth-params of the `Payment` scheme the way mppx does (writing them
//! is in `quote.rs`).
//!
//! A header value may hold several challenges, of any scheme. `Payment` ones
//! start where the token `Payment` (any case) followed by whitespace sits outside a
//! quoted-string, after the start of the value or a comma; their params run until a
//! token that is not followed by `=` (the next scheme). Other schemes are skipped.
//!
//! mppx escapes code points above U+00FF as `\uXXXX` (UTF-16 units) so its challenges
//! stay Latin-1; we undo that. A `\u` whose code point is ≤ U+00FF is an ordinary
//! quoted-pair (`u`), as RFC 9110 says: mppx never writes one.

use std::borrow::Cow;

use http::HeaderValue;

use super::error::ChallengeParseError;

/// The largest header value we read (mppx and mpp-rs cap at 16 KiB too).
pub(crate) const MAX_HEADER_LEN: usize = 16 * 1024;
/// The largest `request` param we accept (mppx `maxRequestParameterLength`).
pub(crate) const MAX_REQUEST_LEN: usize = 16 * 1024;
/// Far more than any challenge has; bounds the duplicate check.
const MAX_PARAMS: usize = 64;

/// The auth-params of one `Payment` challenge, keys lowercased, in header order.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    #[cfg(test)]
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }

    /// Moves the value of `key` out.
    pub(crate) fn take(&mut self, key: &str) -> Option<String> {
        let i = self.0.iter().position(|(k, _)| k == key)?;
        Some(self.0.swap_remove(i).1)
    }
}

/// The `Payment` challenges of one `WWW-Authenticate` value.
pub(crate) fn parse_header(value: &HeaderValue) -> Result<Vec<Params>, ChallengeParseError> {
    // Checked on the raw bytes: the Latin-1 to UTF-8 step may grow the text.
    if value.len() > MAX_HEADER_LEN {
        return Err(ChallengeParseError::too_large());
    }
    parse_unchecked(&header_text(value.as_bytes()))
}

/// The `Payment` challenges of a header value already read as text.
#[cfg(test)]
pub(crate) fn parse_challenges(input: &str) -> Result<Vec<Params>, ChallengeParseError> {
    if input.len() > MAX_HEADER_LEN {
        return Err(ChallengeParseError::too_large());
    }
    parse_unchecked(input)
}

fn parse_unchecked(input: &str) -> Result<Vec<Params>, ChallengeParseError> {
    scheme_starts(input).into_iter().map(|start| parse_params(input, start)).collect()
}

/// Header bytes as text: UTF-8 when they are (mpp-rs servers), else Latin-1, which is
/// what Node (mppx servers) puts on the wire for code points U+0080 to U+00FF.
pub(crate) fn header_text(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
    }
}

/// Byte offsets right after `Payment` + whitespace, for every `Payment` challenge.
fn scheme_starts(input: &str) -> Vec<usize> {
    let b = input.as_bytes();
    let mut starts = Vec::new();
    let (mut in_quotes, mut escaped) = (false, false);
    // Whether only whitespace was seen since the start or the last comma.
    let mut boundary = true;
    for (i, &c) in b.iter().enumerate() {
        if in_quotes {
            if escaped {
                escaped = false;
            } else if c == b'\\' {
                escaped = true;
            } else if c == b'"' {
                in_quotes = false;
            }
            continue;
        }
        match c {
            b'"' => (in_quotes, boundary) = (true, false),
            b',' => boundary = true,
            b' ' | b'\t' => {}
            _ => {
                if boundary {
                    starts.extend(payment_at(b, i));
                }
                boundary = false;
            }
        }
    }
    starts
}

/// Where the params start if `b[i..]` is the `Payment` scheme token.
fn payment_at(b: &[u8], i: usize) -> Option<usize> {
    let rest = b.get(i..)?;
    if rest.len() < 8 || !rest[..7].eq_ignore_ascii_case(b"payment") || !is_ws(rest[7]) {
        return None;
    }
    let start = i + 7 + rest[7..].iter().take_while(|&&c| is_ws(c)).count();
    // `payment = x` is a param of another scheme, not a scheme.
    (b.get(start) != Some(&b'=')).then_some(start)
}

fn parse_params(input: &str, mut i: usize) -> Result<Params, ChallengeParseError> {
    let b = input.as_bytes();
    let mut params = Params::default();
    loop {
        i += b[i..].iter().take_while(|&&c| is_ws(c) || c == b',').count();
        if i >= b.len() {
            break;
        }
        let key_len = b[i..].iter().take_while(|&&c| is_key_char(c)).count();
        if key_len == 0 {
            return Err(ChallengeParseError::syntax("expected a parameter name"));
        }
        let key = &input[i..i + key_len];
        i += key_len;
        i += b[i..].iter().take_while(|&&c| is_ws(c)).count();
        if b.get(i) != Some(&b'=') {
            break; // a token with no `=` starts the next scheme
        }
        i += 1;
        i += b[i..].iter().take_while(|&&c| is_ws(c)).count();
        let value = if b.get(i) == Some(&b'"') {
            let (value, next) = quoted(input, i + 1)?;
            i = next;
            value
        } else {
            let len = b[i..].iter().take_while(|&&c| !is_ws(c) && c != b',' && c != b'"').count();
            if len == 0 {
                return Err(ChallengeParseError::syntax("empty parameter value"));
            }
            i += len;
            input[i - len..i].to_owned()
        };
        let key = key.to_ascii_lowercase();
        if params.0.iter().any(|(k, _)| *k == key) {
            return Err(ChallengeParseError::duplicate(&key));
        }
        if key == "request" && value.len() > MAX_REQUEST_LEN {
            return Err(ChallengeParseError::request_too_large());
        }
        if params.0.len() == MAX_PARAMS {
            return Err(ChallengeParseError::too_many_params());
        }
        params.0.push((key, value));
    }
    Ok(params)
}

/// Reads a quoted-string whose opening quote ends at `i`; returns it and the index after
/// the closing quote.
fn quoted(input: &str, mut i: usize) -> Result<(String, usize), ChallengeParseError> {
    let b = input.as_bytes();
    let mut out = String::new();
    loop {
        let Some(off) = memchr::memchr2(b'"', b'\\', &b[i..]) else {
            return Err(ChallengeParseError::syntax("unterminated quoted-string"));
        };
        out.push_str(&input[i..i + off]);
        i += off;
        if b[i] == b'"' {
            return Ok((out, i + 1));
        }
        let Some(c) = input[i + 1..].chars().next() else {
            return Err(ChallengeParseError::syntax("unterminated quoted-string"));
        };
        i += 1 + c.len_utf8();
        match if c == 'u' { unicode_escape(&b[i..])? } else { None } {
            Some((decoded, len)) => {
                out.push(decoded);
                i += len;
            }
            None => out.push(c),
        }
    }
}

/// Decodes the `XXXX` (and a low surrogate's `\uXXXX`) after a `\u`, if it is an mppx escape.
fn unicode_escape(b: &[u8]) -> Result<Option<(char, usize)>, ChallengeParseError> {
    let Some(unit) = hex4(b) else { return Ok(None) };
    match unit {
        0..=0xFF => Ok(None),
        0xD800..=0xDBFF => {
            let low = b.get(4..6).filter(|p| *p == b"\\u").and_then(|_| hex4(&b[6..]));
            match low {
                Some(low @ 0xDC00..=0xDFFF) => {
                    let c = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                    Ok(char::from_u32(c).map(|c| (c, 10)))
                }
                _ => Err(ChallengeParseError::syntax("lone surrogate in \\u escape")),
            }
        }
        0xDC00..=0xDFFF => Err(ChallengeParseError::syntax("lone surrogate in \\u escape")),
        _ => Ok(char::from_u32(unit).map(|c| (c, 4))),
    }
}

fn hex4(b: &[u8]) -> Option<u32> {
    let digits = b.get(..4)?;
    digits.iter().try_fold(0, |acc, &d| Some(acc * 16 + char::from(d).to_digit(16)?))
}

fn is_ws(c: u8) -> bool {
    c == b' ' || c == b'\t'
}

fn is_key_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(input: &str) -> Params {
        let mut all = parse_challenges(input).unwrap();
        assert_eq!(all.len(), 1, "{input}");
        all.remove(0)
    }

    #[test]
    fn reads_tokens_quoted_strings_and_escapes() {
        let p = one(r#"Payment id="a\"b\\c", realm=api.example.com, method = "tempo""#);
        assert_eq!(p.get("id"), Some(r#"a"b\c"#));
        assert_eq!(p.get("realm"), Some("api.example.com"));
        assert_eq!(p.get("method"), Some("tempo"));
    }

    #[test]
    fn scheme_and_keys_are_case_insensitive() {
        let p = one(r#"pAyMeNt ID="x", Realm="y""#);
        assert_eq!(p.get("id"), Some("x"));
        assert_eq!(p.get("realm"), Some("y"));
    }

    #[test]
    fn duplicate_keys_are_refused_whatever_their_case() {
        let e = parse_challenges(r#"Payment id="a", ID="b""#).unwrap_err();
        assert_eq!(e, ChallengeParseError::duplicate("id"));
    }

    #[test]
    fn splits_several_challenges_and_skips_other_schemes() {
        let all = parse_challenges(
            r#"Bearer realm="x", Payment id="a", realm="r, Payment id=\"no\"", Basic dXNlcg==, Payment id="b""#,
        )
        .unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].get("realm"), Some(r#"r, Payment id="no""#));
        assert_eq!(all[1].get("id"), Some("b"));
        assert!(parse_challenges(r#"Bearer payment="x", Basic abc"#).unwrap().is_empty());
    }

    #[test]
    fn undoes_mppx_unicode_escapes_above_latin1() {
        let p = one(r#"Payment d="em\u2014dash caf\u00e9 \ud83d\ude00 \x""#);
        // `\u00e9` is a plain quoted-pair: mppx never escapes Latin-1.
        assert_eq!(p.get("d"), Some("em\u{2014}dash cafu00e9 \u{1F600} x"));
        assert!(parse_challenges(r#"Payment d="\ud83d""#).is_err());
        assert!(parse_challenges(r#"Payment d="\ude00x""#).is_err());
    }

    #[test]
    fn refuses_malformed_params() {
        for bad in [r#"Payment id="open"#, "Payment id=", r#"Payment id="a", ="x""#, r#"Payment id="a\"#] {
            assert!(parse_challenges(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn enforces_size_limits() {
        let big = format!(r#"Payment id="{}""#, "a".repeat(MAX_HEADER_LEN));
        assert_eq!(parse_challenges(&big), Err(ChallengeParseError::too_large()));
        let value = HeaderValue::from_str(&big).unwrap();
        assert_eq!(parse_header(&value), Err(ChallengeParseError::too_large()));
        let request = format!(r#"Payment request="{}""#, "a".repeat(MAX_REQUEST_LEN + 1));
        assert_eq!(parse_unchecked(&request), Err(ChallengeParseError::request_too_large()));
        let many: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("k{i}=v")).collect();
        let many = format!("Payment {}", many.join(", "));
        assert_eq!(parse_challenges(&many), Err(ChallengeParseError::too_many_params()));
    }

    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn parsing_arbitrary_input_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
                let _ = parse_challenges(&header_text(&bytes));
            }

            #[test]
            fn parsing_header_like_input_never_panics(s in "[Pp]ayment[ a-z=\",\\\\u0-9]{0,80}") {
                let _ = parse_challenges(&s);
            }
        }
    }
}
