//! Writing the auth-params of a `Payment` challenge the way mppx does (reading them is
//! in `params.rs`).

use std::fmt::Write as _;

use http::HeaderValue;

use super::error::ChallengeEncodeError;

/// `Payment k1="v1", k2="v2"`: `\` and `"` escaped, code points above U+00FF written as
/// `\uXXXX` (lowercase hex, UTF-16 units) like mppx, control characters refused.
pub(crate) fn serialize(params: &[(&'static str, &str)]) -> Result<String, ChallengeEncodeError> {
    let len = params.iter().map(|(k, v)| k.len() + v.len() + 5).sum::<usize>();
    let mut out = String::with_capacity(8 + len);
    out.push_str("Payment ");
    for (n, &(key, value)) in params.iter().enumerate() {
        if n > 0 {
            out.push_str(", ");
        }
        out.push_str(key);
        out.push_str("=\"");
        if value.bytes().all(|c| (0x20..0x7f).contains(&c) && c != b'"' && c != b'\\') {
            out.push_str(value); // the usual case: base64url, hostnames, timestamps
        } else {
            escape_into(&mut out, key, value)?;
        }
        out.push('"');
    }
    Ok(out)
}

fn escape_into(out: &mut String, key: &'static str, value: &str) -> Result<(), ChallengeEncodeError> {
    for c in value.chars() {
        match c {
            '\\' | '"' => {
                out.push('\\');
                out.push(c);
            }
            '\t' => out.push(c),
            // CR and LF would split the header; the others no header value may hold.
            '\0'..='\x1f' | '\x7f' => return Err(ChallengeEncodeError::new(key)),
            '\u{80}'..='\u{ff}' => out.push(c),
            c if !c.is_ascii() => {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    Ok(())
}

/// Text whose chars are all ≤ U+00FF (as [`serialize`] makes it) as a header value,
/// one Latin-1 byte per char, as mppx's servers send it.
pub(crate) fn to_header_value(text: String) -> HeaderValue {
    let bytes: Vec<u8> = if text.is_ascii() {
        text.into_bytes()
    } else {
        // `serialize` escaped everything above U+00FF, so each char fits one byte.
        text.chars().map(|c| u8::try_from(c).unwrap_or(b'?')).collect()
    };
    HeaderValue::from_maybe_shared(bytes::Bytes::from(bytes))
        .expect("serialize rejects the control characters a header value cannot hold")
}

#[cfg(test)]
mod tests {
    use super::super::params::header_text;
    use super::*;

    #[test]
    fn writes_like_mppx() {
        let s = serialize(&[("id", "a"), ("description", "say \"hi\" \\ caf\u{e9} \u{2014} \u{1F600}")]);
        assert_eq!(s.unwrap(), r#"Payment id="a", description="say \"hi\" \\ café \u2014 \ud83d\ude00""#);
        assert_eq!(serialize(&[("realm", "a\r\nb")]), Err(ChallengeEncodeError::new("realm")));
    }

    #[test]
    fn header_bytes_are_latin1_both_ways() {
        let value = to_header_value(serialize(&[("realm", "café")]).unwrap());
        assert_eq!(value.as_bytes(), b"Payment realm=\"caf\xe9\"");
        assert_eq!(header_text(value.as_bytes()), "Payment realm=\"café\"");
        assert_eq!(header_text("café".as_bytes()), "café");
    }

    mod props {
        use super::super::super::params::parse_challenges;
        use super::super::serialize;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn serialize_then_parse_round_trips(
                values in proptest::collection::vec("[^\\p{Cc}]{0,40}", 1..6),
            ) {
                const KEYS: [&str; 6] = ["id", "realm", "method", "intent", "request", "x-y_z"];
                let pairs: Vec<(&'static str, &str)> =
                    KEYS.iter().copied().zip(values.iter().map(String::as_str)).collect();
                let parsed = parse_challenges(&serialize(&pairs).unwrap()).unwrap();
                prop_assert_eq!(parsed.len(), 1);
                for (k, v) in pairs {
                    prop_assert_eq!(parsed[0].get(k), Some(v));
                }
            }
        }
    }
}
