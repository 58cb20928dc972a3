//! Tests of the fast chunk reader: wherever it answers, it answers as serde does.

use super::*;
use crate::amount::Usage;
use crate::meter::Meter;
use crate::meter::openai::OpenAiTokenMeter;
use crate::meter::openai::chunk::Chunk;

/// Realistic chunks the fast reader must answer (and answer as serde does).
const FAST: &[&str] = &[
    // OpenAI, with `stream_options.include_usage` (`usage: null` until the last chunk).
    r#"{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
    r#"{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[{"index":0,"delta":{"content":" world"},"logprobs":null,"finish_reason":null}],"usage":null,"obfuscation":"Ab3dE"}"#,
    r#"{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#,
    r#"{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-2024-08-06","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#,
    // Logprobs, several choices (`n: 2`), escapes, non-ASCII and `\u` escapes in text.
    r#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":{"content":[{"token":"Hi","logprob":-0.0017,"bytes":[72,105],"top_logprobs":[]}],"refusal":null},"finish_reason":null}]}"#,
    r#"{"id":"c","choices":[{"index":0,"delta":{"content":"a"}},{"index":1,"delta":{"content":"bc"}},{"index":200,"delta":{"content":"d"}}]}"#,
    r#"{"id":"c","choices":[{"index":0,"delta":{"content":"line\n\t\"quoted\" \\ back\/slash \u00e9\u20ac\u0000 caf\u00E9"}}]}"#,
    "{\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"naïve café — 日本語 🎉\"}}]}",
    // vLLM, with `continuous_usage_stats`: usage in every chunk.
    r#"{"id":"chatcmpl-4d3a0b9e2f1c4c8e","object":"chat.completion.chunk","created":1731000000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":" fox"},"logprobs":null,"finish_reason":null}],"usage":{"prompt_tokens":18,"total_tokens":25,"completion_tokens":7}}"#,
    r#"{"id":"chatcmpl-4d3a0b9e2f1c4c8e","object":"chat.completion.chunk","created":1731000000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{"index":0,"delta":{"content":""},"logprobs":null,"finish_reason":"stop","stop_reason":null}]}"#,
    // llama.cpp: fields in another order, usage and timings on the finish chunk.
    r#"{"choices":[{"finish_reason":null,"index":0,"delta":{"content":"Paris"}}],"created":1731000000,"id":"chatcmpl-Zk","model":"llama-3.2-3b","system_fingerprint":"b4600-b1f9c1e2","object":"chat.completion.chunk"}"#,
    r#"{"choices":[{"finish_reason":"stop","index":0,"delta":{}}],"created":1731000000,"id":"chatcmpl-Zk","model":"llama-3.2-3b","object":"chat.completion.chunk","usage":{"completion_tokens":4,"prompt_tokens":18,"total_tokens":22},"timings":{"prompt_n":18,"prompt_ms":41.2,"predicted_per_second":61.03}}"#,
    // DeepSeek and OpenRouter reasoning, refusals.
    r#"{"id":"0f2a6d3e","object":"chat.completion.chunk","created":1737500000,"model":"deepseek-reasoner","system_fingerprint":"fp_7e73fd9a08","choices":[{"index":0,"delta":{"content":null,"reasoning_content":"Let me think"},"logprobs":null,"finish_reason":null}]}"#,
    r#"{"id":"gen-1","provider":"DeepInfra","model":"deepseek/deepseek-r1","object":"chat.completion.chunk","created":1737500000,"choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning":"Hmm, \"ok\""},"finish_reason":null,"native_finish_reason":null,"logprobs":null}]}"#,
    r#"{"id":"c","choices":[{"index":0,"delta":{"refusal":"I can't help with that."}}]}"#,
    // Tool calls.
    r#"{"id":"chatcmpl-B9MHD","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_DdmO9pD3xa9XTPNJ32zg2hcA","type":"function","function":{"name":"get_weather","arguments":""}}],"refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
    r#"{"id":"chatcmpl-B9MHD","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"location\":\"Par"}},null,{"index":1,"function":null},{"index":2}]}}]}"#,
    // Error frames, empty objects, whitespace, nulls for everything.
    r#"{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}"#,
    r#" { "id" : null , "model" : null , "created" : null , "choices" : null , "usage" : null , "error" : null } "#,
    "{ \t\"choices\": [ null, { \"index\": null, \"delta\": null } ], \"x\": [true, false, -1.5, 0, [], {}]\t}",
    "{}",
];

/// Inputs the fast reader may leave to serde (if it answers, it must agree).
const UNUSUAL: &[&str] = &[
    "{\r\n\t\"choices\": [ null, { \"index\": null, \"delta\": null } ],\n\"x\": [true, false, -1.5, 0, [], {}]\n}",
    r#"{"id":"chat\"cmpl","model":"m\u00e9","choices":[]}"#,
    r#"{"id":"c","id":"d"}"#,
    r#"{"choices":[{"index":0,"index":1}]}"#,
    r#"{"choices":[{"delta":{"content":"a","content":"b"}}]}"#,
    r#"{"usage":{"completion_tokens":1,"completion_tokens":2}}"#,
    r#"{"usage":{"completion_tokens":1.0,"prompt_tokens":-3}}"#,
    r#"{"usage":{"completion_tokens":99999999999999999999}}"#,
    r#"{"usage":[5,6]}"#,
    r#"{"created":1e3,"x":2E5}"#,
    r#"{"created":01}"#,
    r#"{"choices":[{"delta":{"content":"\ud83d\ude00"}}]}"#,
    r#"{"choices":[{"delta":{"content":"\ud83d"}}]}"#,
    r#"{"choices":[{"delta":{"content":"\x"}}]}"#,
    "{\"choices\":[{\"delta\":{\"content\":\"raw\nnewline\"}}]}",
    r#"{"choices":[{"delta":{"content":7,"reasoning":true,"refusal":{"a":1}}}]}"#,
    r#"{"choices":[[0,{"content":"positional"}]]}"#,
    r#"{"choices":{"index":0}}"#,
    r#"{"choices":[{"delta":{"tool_calls":{"function":{}}}}]}"#,
    r#"{"choices":[{"delta":{"tool_calls":[{"function":{"name":"f","name":"g"}}]}}]}"#,
    r#"{"\u0069d":"escaped key"}"#,
    r#"{"a":1,}"#,
    r#"{"a":1} x"#,
    r#"{"a":"#,
    r#"[1,2]"#,
    r#""text""#,
    r#"{"error":{"message":"x"},"error":null}"#,
    r#"{"x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}"#,
];

/// Reads `data` both ways; the fast reader agrees with serde when it answers. Returns
/// whether it answered.
fn same_as_serde(data: &[u8]) -> bool {
    same_as_serde_after(&mut Scanner::default(), data)
}

/// [`same_as_serde`] with a scanner that has read other chunks before.
fn same_as_serde_after(scanner: &mut Scanner, data: &[u8]) -> bool {
    let full = serde_json::from_slice::<Chunk<'_>>(data).ok();
    let Some(fast) = scanner.scan(data) else {
        return false;
    };
    assert_eq!(Some(fast), full.as_ref().map(Chunk::summary), "{}", String::from_utf8_lossy(data));
    true
}

#[test]
fn fast_reader_agrees_with_serde() {
    for chunk in FAST {
        assert!(same_as_serde(chunk.as_bytes()), "fast reader declined {chunk}");
    }
    for chunk in UNUSUAL {
        same_as_serde(chunk.as_bytes());
    }
}

/// Streams every corpus chunk through a meter, and through a meter fed by serde alone:
/// the usage after every event and the cutoff agree.
#[test]
fn metering_matches_the_serde_reader_event_by_event() {
    let corpus: Vec<&str> = FAST.iter().chain(UNUSUAL).copied().collect();
    let sse_meter = || {
        let mut meter = OpenAiTokenMeter::with_prompt_estimate(30);
        let mut head = http::Response::new(()).into_parts().0;
        head.headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/event-stream"));
        assert_eq!(meter.on_response(&head), Usage { input: 30, output: 0 });
        meter
    };
    for rotation in 0..corpus.len() {
        let (mut fast, mut slow) = (sse_meter(), sse_meter());
        for chunk in corpus.iter().cycle().skip(rotation).take(corpus.len()) {
            let event = format!("data: {chunk}\n\n");
            let usage = fast.on_event(event.as_bytes());
            if let Ok(chunk) = serde_json::from_slice::<Chunk<'_>>(chunk.as_bytes()) {
                slow.add(chunk.summary());
            }
            assert_eq!(usage, slow.usage(), "after {chunk}");
        }
        assert_eq!(fast.cutoff(), slow.cutoff());
    }
}

/// Chunks that share their start with the chunk read before are read from where its
/// delta text began; whatever follows, the result is serde's.
#[test]
fn chunks_read_on_from_a_shared_prefix_agree_with_serde() {
    let first = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}],"usage":null}"#;
    let prefix = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"m","choices":[{"index":0,"delta":{"content":"#;
    let mut scanner = Scanner::default();
    assert!(same_as_serde_after(&mut scanner, first.as_bytes()));
    assert_eq!(scanner.saved_prefix(), Some(prefix.as_bytes()));
    let tails = [
        // Ordinary next chunks: other text, escapes, non-ASCII, null, more fields after.
        r#"" world"},"finish_reason":null}],"usage":null}"#,
        r#""line\n\"q\" \u00e9\u20ac"},"finish_reason":null}],"usage":null}"#,
        "\"naïve — 日本 🎉\"},\"finish_reason\":null}],\"usage\":null}",
        r#"null,"reasoning_content":"think"},"finish_reason":null}],"usage":null}"#,
        r#""",  "tool_calls":[{"function":{"name":"f","arguments":"{}"}}]} ,"finish_reason":"stop"}]}"#,
        r#""x"},"finish_reason":null},{"index":3,"delta":{"content":"yz"}}],"usage":{"prompt_tokens":5,"completion_tokens":6}}"#,
        r#""x"}}],"usage":null,"error":{"message":"m"},"obfuscation":"k2"}"#,
        // Duplicates of fields read before the shared prefix ended, or after it.
        r#""x","content":"y"}}]}"#,
        r#""x"},"index":1}]}"#,
        r#""x"}}],"choices":[]}"#,
        r#""x"}}],"id":"again"}"#,
        // Not JSON, or not a shape the fast reader reads.
        r#""x"}}]"#,
        r#""x"}}]}}"#,
        r#""x"}}],}"#,
        r#""\ud83d\ude00"}}]}"#,
        "\"raw\nline\"}}]}",
        "\"\u{1}\"}}]}",
        r#"7}}]}"#,
        r#""x"}}]} trailing"#,
    ];
    for tail in tails {
        let chunk = format!("{prefix}{tail}");
        same_as_serde_after(&mut scanner, chunk.as_bytes());
        assert_eq!(scanner.saved_prefix(), Some(prefix.as_bytes()), "{chunk}");
    }
    // Invalid UTF-8 after the prefix.
    let chunk = [prefix.as_bytes(), b"\"\xff\"}}]}"].concat();
    assert!(!same_as_serde_after(&mut scanner, &chunk));
    // Another start: read from the beginning, and saved in its turn.
    assert!(same_as_serde_after(&mut scanner, FAST[1].as_bytes()));
    assert!(scanner.saved_prefix().is_some_and(|p| p.starts_with(br#"{"id":"chatcmpl-B9MBs8C"#)));
}

/// Chunks of one stream that differ only in their delta text: the later ones are read
/// from the saved point and, when the rest matches too, from what the last one read.
#[test]
fn chunks_that_differ_only_in_their_text_agree_with_serde() {
    let shapes = [
        r#"{"choices":[{"finish_reason":null,"index":0,"delta":{"content":TEXT}}],"created":1,"id":"chatcmpl-l","model":"llama","object":"chat.completion.chunk"}"#,
        r#"{"id":"c","created":1,"model":"m","choices":[{"index":1,"delta":{"reasoning_content":TEXT}},{"index":2,"delta":{"content":"xyz"}}],"usage":{"prompt_tokens":3,"completion_tokens":4}}"#,
        // A `null` first: the string after it is where the saved prefix ends.
        r#"{"id":"d","choices":[{"index":0,"delta":{"content":null,"reasoning_content":TEXT,"refusal":null}}]}"#,
        // Tool calls: the saved prefix ends in a function's arguments.
        r#"{"id":"t","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":TEXT}},{"index":1,"function":{"name":"f","arguments":"{}"}}]},"logprobs":null}],"usage":null}"#,
        r#"{"id":"t","choices":[{"index":0,"delta":{"content":null,"tool_calls":[null,{"id":"call_1","type":"function","function":{"name":TEXT,"arguments":""}}],"refusal":null}}]}"#,
    ];
    let texts = [r#""a""#, r#""""#, r#""with \"escapes\" and \u00e9""#, "\"日本語 🎉\"", "null", r#""a""#, r#""bc""#];
    for shape in shapes {
        let mut scanner = Scanner::default();
        for text in texts.iter().chain(&texts) {
            let chunk = shape.replace("TEXT", text);
            assert!(same_as_serde_after(&mut scanner, chunk.as_bytes()), "{chunk}");
        }
        // The tail read last is not taken for one that differs.
        let others = [
            shape.replace("TEXT", r#""a""#).replacen("\"id\":\"", "\"id\":\"x", 1),
            shape.replace("TEXT", r#""a","refusal":"no""#),
            shape.replace("TEXT", r#""a","arguments":"twice""#),
            shape.replace("TEXT", r#""a"}],"x":1,"y":{"#),
        ];
        for other in others {
            same_as_serde_after(&mut scanner, other.as_bytes());
        }
        for other in
            [shape.replace("TEXT", r#""a""#).replace("llama", "llama2"), shape.replace("TEXT", r#""a","x":"no""#)]
        {
            assert!(same_as_serde_after(&mut scanner, other.as_bytes()), "{other}");
        }
    }
}

/// OpenAI's chunks end with a random `obfuscation` string: a chunk that differs from the
/// last one in its text and that string reads like it but for the text.
#[test]
fn chunks_that_differ_in_text_and_padding_agree_with_serde() {
    let shape = r#"{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,"delta":{"content":TEXT},"finish_reason":null}],"usage":null,"obfuscation":PAD,"model":"again"}"#;
    let shape = shape.replace(r#","model":"again""#, "");
    let after =
        r#"{"choices":[{"index":0,"delta":{"content":TEXT}}],"obfuscation":PAD,"id":"chatcmpl-2","model":"m-2"}"#;
    let pads = [r#""x""#, r#""""#, r#""Ab3dEf9""#, r#""\u00e9\n""#, "\"é\"", r#""long padding string""#];
    for shape in [shape.as_str(), after] {
        let mut scanner = Scanner::default();
        for (n, pad) in pads.iter().cycle().take(24).enumerate() {
            let text = [r#""a""#, r#""bcd""#, "null", r#""\"q\"""#][n % 4];
            let chunk = shape.replace("TEXT", text).replace("PAD", pad);
            assert!(same_as_serde_after(&mut scanner, chunk.as_bytes()), "{chunk}");
        }
        // Not a string, or not a valid one, in the hole: read as serde reads it.
        for pad in ["7", "null", "\"\u{1}\"", r#""\x""#, r#""a"}"#, r#""a","id":"z""#, r#""a" "#, r#""ab"#] {
            let chunk = shape.replace("TEXT", r#""a""#).replace("PAD", pad);
            same_as_serde_after(&mut scanner, chunk.as_bytes());
            let good = shape.replace("TEXT", r#""b""#).replace("PAD", r#""ok""#);
            assert!(same_as_serde_after(&mut scanner, good.as_bytes()), "{good}");
        }
        // Bytes that are not UTF-8 in the hole.
        let (head, tail) =
            shape.replace("TEXT", r#""a""#).split_once("PAD").map(|(h, t)| (h.to_owned(), t.to_owned())).unwrap();
        let chunk = [head.as_bytes(), b"\"\xff\"", tail.as_bytes()].concat();
        assert!(!same_as_serde_after(&mut scanner, &chunk));
    }
}

mod props {
    use super::*;
    use proptest::prelude::*;

    /// Bytes that matter to a JSON reader, to splice into chunks.
    const SPLICE: &[&[u8]] = &[
        b"\"",
        b"\\",
        b"{",
        b"}",
        b"[",
        b"]",
        b",",
        b":",
        b"0",
        b"-",
        b".",
        b"e",
        b" ",
        b"\n",
        b"\x01",
        b"u",
        b"null",
        b"\\u00e9",
        b"\\ud83d",
        "é".as_bytes(),
        b"\xff",
        b"\"id\":\"x\",",
        b"\"usage\":{},",
    ];

    fn json_string(s: &str) -> String {
        serde_json::to_string(s).unwrap()
    }

    proptest! {
        #[test]
        fn mutated_chunks_read_alike(
            pick in 0..FAST.len() + UNUSUAL.len(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0..3u8, 0..SPLICE.len()), 1..4),
        ) {
            let mut data = FAST.iter().chain(UNUSUAL).nth(pick).unwrap().as_bytes().to_vec();
            for (at, op, splice) in edits {
                let at = at.index(data.len() + 1);
                match op {
                    0 if at < data.len() => { data.remove(at); }
                    1 => { data.splice(at..at, SPLICE[splice].iter().copied()); }
                    _ => data.truncate(at),
                }
            }
            same_as_serde(&data);
        }

        #[test]
        fn chunks_after_another_read_alike(
            first in 0..FAST.len() + UNUSUAL.len(),
            pick in 0..FAST.len() + UNUSUAL.len(),
            keep in any::<prop::sample::Index>(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0..3u8, 0..SPLICE.len()), 0..3),
        ) {
            // The next chunk keeps some start of the first one (often all of its prefix).
            let corpus: Vec<&str> = FAST.iter().chain(UNUSUAL).copied().collect();
            let (first, other) = (corpus[first].as_bytes(), corpus[pick].as_bytes());
            let keep = keep.index(first.len() + 1);
            let mut data = [&first[..keep], other.get(keep..).unwrap_or_default()].concat();
            for (at, op, splice) in edits {
                let at = keep + at.index(data.len() - keep + 1);
                match op {
                    0 if at < data.len() => { data.remove(at); }
                    1 => { data.splice(at..at, SPLICE[splice].iter().copied()); }
                    _ => data.truncate(at),
                }
            }
            let mut scanner = Scanner::default();
            same_as_serde_after(&mut scanner, first);
            same_as_serde_after(&mut scanner, &data);
            same_as_serde_after(&mut scanner, &data);
        }

        #[test]
        fn streams_of_generated_chunks_read_alike(
            chunks in proptest::collection::vec((any::<String>(), ".{0,6}", 0..4usize, any::<bool>()), 1..12),
        ) {
            let mut scanner = Scanner::default();
            for (text, pad, shape, id_last) in chunks {
                let (text, pad) = (json_string(&text), json_string(&pad));
                let id = if id_last { "" } else { r#""id":"c1","# };
                let tail_id = if id_last { r#","id":"c1","model":"m""# } else { "" };
                let delta = [
                    format!(r#"{{"content":{text}}}"#),
                    format!(r#"{{"content":null,"reasoning_content":{text}}}"#),
                    format!(r#"{{"tool_calls":[{{"index":0,"function":{{"arguments":{text}}}}}]}}"#),
                    format!(r#"{{"content":{text}}},"logprobs":null,"finish_reason":null"#),
                ][shape].clone();
                let chunk = format!(
                    r#"{{{id}"object":"chat.completion.chunk","choices":[{{"index":0,"delta":{delta}}}],"usage":null,"obfuscation":{pad}{tail_id}}}"#
                );
                prop_assert!(same_as_serde_after(&mut scanner, chunk.as_bytes()), "fast reader declined {}", chunk);
            }
        }

        #[test]
        fn generated_chunks_read_alike(
            id in "[a-zA-Z0-9_-]{0,24}",
            text in proptest::collection::vec(any::<String>(), 0..4),
            index in proptest::option::of(0..300u64),
            usage in proptest::option::of((any::<u64>(), proptest::option::of(any::<u64>()))),
            tool in proptest::option::of((".{0,8}", ".{0,12}")),
        ) {
            let deltas: Vec<String> = text.iter().enumerate().map(|(n, t)| {
                let key = ["content", "reasoning_content", "reasoning", "refusal"][n];
                format!("{}:{}", json_string(key), json_string(t))
            }).collect();
            let mut delta = deltas.join(",");
            if let Some((name, arguments)) = &tool {
                let sep = if delta.is_empty() { "" } else { "," };
                delta += &format!(
                    r#"{sep}"tool_calls":[{{"index":0,"type":"function","function":{{"name":{},"arguments":{}}}}}]"#,
                    json_string(name), json_string(arguments),
                );
            }
            let index = index.map_or("null".to_owned(), |i| i.to_string());
            let usage = usage.map_or("null".to_owned(), |(prompt, completion)| {
                let completion = completion.map_or("null".to_owned(), |c| c.to_string());
                format!(r#"{{"prompt_tokens":{prompt},"completion_tokens":{completion},"total_tokens":1}}"#)
            });
            let chunk = format!(
                r#"{{"id":"{id}","object":"chat.completion.chunk","created":1741569952,"model":"m","choices":[{{"index":{index},"delta":{{{delta}}},"finish_reason":null}}],"usage":{usage}}}"#
            );
            prop_assert!(same_as_serde(chunk.as_bytes()), "fast reader declined {}", chunk);
        }
    }
}

/// Events of every shape: read through the fast path for one `data:` line, they meter as
/// when their data is found by [`sse_data`](crate::meter::sse_data) and read by serde.
#[test]
fn events_meter_as_their_sse_data_read_by_serde() {
    let chunk = r#"{"id":"e","model":"m","choices":[{"index":0,"delta":{"content":"abcdefgh"}}]}"#;
    let events = [
        format!("data: {chunk}\n\n"),
        format!("data:{chunk}\n\n"),
        format!("data:  {chunk}\n\n"),
        format!("data: {chunk} \t\n\n"),
        format!("data: {chunk}\r\n\r\n"),
        format!("data: {chunk}\r\r"),
        format!("data: {chunk}"),
        format!("data: {chunk}\nevent: delta\n\n"),
        format!("data: {chunk}\n: comment\n\n"),
        format!("event: delta\ndata: {chunk}\n\n"),
        format!("data: {chunk}\ndata: {chunk}\n\n"),
        format!("data: {}\ndata: {}\n\n", &chunk[..20], &chunk[20..]),
        format!("data: {}\r\ndata: {}\r\n\r\n", &chunk[..30], &chunk[30..]),
        format!("data: {}\ndata:\n\n", &chunk[..30]),
        "data: [DONE]\n\n".into(),
        "data: [DONE]\ndata: [DONE]\n\n".into(),
        "data:\n\n".into(),
        "data: \n\n".into(),
        ": keep-alive\n\n".into(),
        "\n".into(),
        "data: not json\n\n".into(),
    ];
    let sse_meter = || {
        let mut meter = OpenAiTokenMeter::with_prompt_estimate(30);
        let mut head = http::Response::new(()).into_parts().0;
        head.headers.insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/event-stream"));
        meter.on_response(&head);
        meter
    };
    let (mut fast, mut slow, mut scratch) = (sse_meter(), sse_meter(), Vec::new());
    for event in events.iter().chain(&events) {
        let usage = fast.on_event(event.as_bytes());
        let data = crate::meter::sse_data(event.as_bytes(), &mut scratch);
        if let Some(Ok(chunk)) = data.filter(|data| *data != b"[DONE]").map(serde_json::from_slice::<Chunk<'_>>) {
            slow.add(chunk.summary());
        }
        assert_eq!(usage, slow.usage(), "{event:?}");
    }
    assert_eq!(fast.cutoff(), slow.cutoff());
}
