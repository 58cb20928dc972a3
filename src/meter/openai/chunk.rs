//! The parts of an OpenAI chat completion (or one streamed chunk of it) that the token
//! meter reads.
//!
//! The types borrow from the input and fold arrays as they are read, so a chunk is read
//! without allocating unless a string the meter keeps (`id`, `model`) has escapes; text is
//! only measured. They are lenient: a field of an unexpected type reads as absent rather
//! than failing the whole chunk.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::amount::Usage;

/// A `chat.completion.chunk`, a whole `chat.completion`, or an `{"error": ...}` frame.
///
/// Streamed chunks of the usual shapes are read by the meter's faster reader
/// (`scan.rs`) straight into their [`Summary`]; serde reads the rest into this.
#[derive(Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub(super) struct Chunk<'a> {
    #[serde(borrow)]
    pub(super) id: Str<'a>,
    #[serde(borrow)]
    pub(super) model: Str<'a>,
    pub(super) created: Number,
    pub(super) choices: Choices,
    pub(super) usage: Option<UsageFields>,
    pub(super) error: Option<IgnoredAny>,
}

impl Chunk<'_> {
    /// What the meter takes from a streamed chunk.
    pub(super) fn summary(&self) -> Summary<'_> {
        Summary {
            id: self.id.0.as_deref().map(str::as_bytes),
            model: self.model.0.as_deref().map(str::as_bytes),
            created: self.created,
            choices: self.choices,
            usage: self.usage,
        }
    }
}

/// What the meter takes from a streamed chunk, whichever reader read it: `id` and
/// `model` (UTF-8) as bytes, so a reader that has checked them need not convert them.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Summary<'a> {
    pub(super) id: Option<&'a [u8]>,
    pub(super) model: Option<&'a [u8]>,
    pub(super) created: Number,
    pub(super) choices: Choices,
    pub(super) usage: Option<UsageFields>,
}

/// The `usage` object.
#[derive(Clone, Copy, Debug, Default, PartialEq, Deserialize)]
#[serde(default)]
pub(super) struct UsageFields {
    pub(super) prompt_tokens: Number,
    pub(super) completion_tokens: Number,
}

impl UsageFields {
    /// The usage it reports, or `None` without `completion_tokens`; a missing
    /// `prompt_tokens` keeps `prompt_estimate`.
    pub(super) fn usage(&self, prompt_estimate: u64) -> Option<Usage> {
        Some(Usage { input: self.prompt_tokens.0.unwrap_or(prompt_estimate), output: self.completion_tokens.0? })
    }
}

/// What the meter needs from `choices`: the text bytes of every delta, and which choice
/// indexes appeared (bit `i` for index `i`; indexes of 128 and up are not kept).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Choices {
    pub(super) text_bytes: u64,
    pub(super) indexes: u128,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Choice {
    index: Number,
    delta: Option<Delta>,
}

/// The text of a delta: content, reasoning (both vendor spellings), refusal, tool calls.
#[derive(Default, Deserialize)]
#[serde(default)]
struct Delta {
    content: TextLen,
    reasoning_content: TextLen,
    reasoning: TextLen,
    refusal: TextLen,
    tool_calls: ToolCalls,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct ToolCall {
    function: Option<Function>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct Function {
    name: TextLen,
    arguments: TextLen,
}

/// A string kept by the meter: borrowed unless it has escapes; anything else reads as `None`.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Str<'a>(pub(super) Option<Cow<'a, str>>);

/// A non-negative integer; anything else reads as `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(super) struct Number(pub(super) Option<u64>);

/// The UTF-8 length of a string; anything else reads as zero.
#[derive(Default)]
struct TextLen(u64);

/// The summed text length of `tool_calls[].function.{name,arguments}`.
#[derive(Default)]
struct ToolCalls(u64);

fn len(s: &str) -> u64 {
    u64::try_from(s.len()).unwrap_or(u64::MAX)
}

/// Implements `Deserialize` for a lenient type: `$visit` handles the expected shape, and
/// every other JSON value is skipped and read as `Default`.
macro_rules! lenient {
    ($ty:ty, $expecting:literal, { $($visit:tt)* }) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    $($visit)*
                }
                deserializer.deserialize_any(V)
            }
        }
    };
}

/// The visitor methods that skip every JSON value not handled otherwise.
macro_rules! skip_others {
    ($($method:ident($arg:ty)),*) => {
        $(fn $method<E: de::Error>(self, _: $arg) -> Result<Self::Value, E> {
            Ok(Default::default())
        })*
    };
}

lenient!(Number, "a number", {
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Number, E> {
        Ok(Number(Some(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Number, E> {
        Ok(Number(u64::try_from(v).ok()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Number, E> {
        // `as` saturates; only whole, non-negative values are numbers here.
        Ok(Number((v >= 0.0 && v.fract() == 0.0).then_some(v as u64)))
    }
    skip_others!(visit_bool(bool), visit_str(&str));
    fn visit_unit<E: de::Error>(self) -> Result<Number, E> {
        Ok(Number(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Number, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| Number(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Number, A::Error> {
        IgnoredAny.visit_map(map).map(|_| Number(None))
    }
});

lenient!(TextLen, "a string", {
    fn visit_str<E: de::Error>(self, v: &str) -> Result<TextLen, E> {
        Ok(TextLen(len(v)))
    }
    skip_others!(visit_bool(bool), visit_u64(u64), visit_i64(i64), visit_f64(f64));
    fn visit_unit<E: de::Error>(self) -> Result<TextLen, E> {
        Ok(TextLen(0))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<TextLen, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| TextLen(0))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TextLen, A::Error> {
        IgnoredAny.visit_map(map).map(|_| TextLen(0))
    }
});

lenient!(ToolCalls, "an array of tool calls", {
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ToolCalls, A::Error> {
        let mut total = 0u64;
        while let Some(call) = seq.next_element::<Option<ToolCall>>()? {
            if let Some(function) = call.and_then(|call| call.function) {
                total = total.saturating_add(function.name.0).saturating_add(function.arguments.0);
            }
        }
        Ok(ToolCalls(total))
    }
    skip_others!(visit_bool(bool), visit_u64(u64), visit_i64(i64), visit_f64(f64), visit_str(&str));
    fn visit_unit<E: de::Error>(self) -> Result<ToolCalls, E> {
        Ok(ToolCalls(0))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ToolCalls, A::Error> {
        IgnoredAny.visit_map(map).map(|_| ToolCalls(0))
    }
});

lenient!(Choices, "an array of choices", {
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Choices, A::Error> {
        let mut choices = Choices::default();
        while let Some(choice) = seq.next_element::<Option<Choice>>()? {
            let Some(choice) = choice else { continue };
            if let Ok(index @ 0..128) = u8::try_from(choice.index.0.unwrap_or(0)) {
                choices.indexes |= 1 << index;
            }
            if let Some(delta) = choice.delta {
                let text = [delta.content, delta.reasoning_content, delta.reasoning, delta.refusal];
                let text = text.iter().fold(delta.tool_calls.0, |sum, t| sum.saturating_add(t.0));
                choices.text_bytes = choices.text_bytes.saturating_add(text);
            }
        }
        Ok(choices)
    }
    skip_others!(visit_bool(bool), visit_u64(u64), visit_i64(i64), visit_f64(f64), visit_str(&str));
    fn visit_unit<E: de::Error>(self) -> Result<Choices, E> {
        Ok(Choices::default())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Choices, A::Error> {
        IgnoredAny.visit_map(map).map(|_| Choices::default())
    }
});

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Str<'a>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'a>, E> {
                Ok(Str(Some(Cow::Borrowed(v))))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'a>, E> {
                Ok(Str(Some(Cow::Owned(v.to_owned()))))
            }
            skip_others!(visit_bool(bool), visit_u64(u64), visit_i64(i64), visit_f64(f64));
            fn visit_unit<E: de::Error>(self) -> Result<Str<'a>, E> {
                Ok(Str(None))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Str<'a>, A::Error> {
                IgnoredAny.visit_seq(seq).map(|_| Str(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Str<'a>, A::Error> {
                IgnoredAny.visit_map(map).map(|_| Str(None))
            }
        }
        deserializer.deserialize_any(V(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_chunk_leniently() {
        let json = br#"{"id":"c1","model":"m\u00e9","created":1.0,"choices":[
            {"index":1,"delta":{"content":"h\u00e9","reasoning":null,"refusal":7,
             "tool_calls":[null,{"function":{"name":"f","arguments":"{\"a\":1}"}}]}},
            null,{"index":-1,"delta":null},{"index":500}],"usage":{"completion_tokens":"x"}}"#;
        let chunk: Chunk<'_> = serde_json::from_slice(json).unwrap();
        assert!(matches!(chunk.id.0, Some(Cow::Borrowed("c1"))));
        assert_eq!(chunk.model.0.as_deref(), Some("mé"));
        assert_eq!(chunk.created.0, Some(1));
        assert_eq!(chunk.choices.text_bytes, 3 + 1 + 7);
        // A missing or invalid index reads as 0; 500 is past what is kept.
        assert_eq!(chunk.choices.indexes, 0b11);
        assert_eq!(chunk.usage.unwrap().usage(5), None);
        assert!(chunk.error.is_none());
    }

    #[test]
    fn reads_usage_and_errors() {
        let chunk: Chunk<'_> =
            serde_json::from_slice(br#"{"choices":[],"usage":{"prompt_tokens":9,"completion_tokens":4}}"#).unwrap();
        assert_eq!(chunk.usage.unwrap().usage(0), Some(Usage { input: 9, output: 4 }));
        let chunk: Chunk<'_> = serde_json::from_slice(br#"{"usage":{"completion_tokens":4}}"#).unwrap();
        assert_eq!(chunk.usage.unwrap().usage(3), Some(Usage { input: 3, output: 4 }));
        let chunk: Chunk<'_> = serde_json::from_slice(br#"{"error":{"message":"x"},"usage":null}"#).unwrap();
        assert!(chunk.error.is_some() && chunk.usage.is_none());
        for not_a_chunk in [&b"[DONE]"[..], b"\"x\"", b"{\"id\":1"] {
            assert!(serde_json::from_slice::<Chunk<'_>>(not_a_chunk).is_err());
        }
    }
}
