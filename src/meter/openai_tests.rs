//! Tests of [`OpenAiTokenMeter`] with realistic provider streams.

use super::*;
use crate::meter::SseScanner;
use crate::{Amount, Price, Rate};

fn head(content_type: &str) -> response::Parts {
    http::Response::builder().header("content-type", content_type).body(()).unwrap().into_parts().0
}

/// A meter for a stream, built the way the layer builds it, with 30 estimated prompt tokens.
fn sse_meter() -> OpenAiTokenMeter {
    let (request, _) = http::Request::new(()).into_parts();
    let price = Price::tokens(Rate::per_unit(Amount::new(1)), Rate::per_unit(Amount::new(2)));
    let quote = Quote::new(price).upfront(Usage { input: 30, output: 0 });
    let mut meter = OpenAiTokenMeter::new().make_meter(&request, &quote);
    assert_eq!(meter.on_response(&head("text/event-stream; charset=utf-8")), Usage { input: 30, output: 0 });
    meter
}

/// Feeds `stream` in chunks of `chunk` bytes, event by event as the body does; returns the
/// usage after each event.
fn feed(meter: &mut OpenAiTokenMeter, stream: &str, chunk: usize) -> Vec<Usage> {
    let (mut scanner, mut pending, mut out) = (SseScanner::new(), Vec::new(), Vec::new());
    for mut rest in stream.as_bytes().chunks(chunk) {
        while let Some(n) = scanner.next_boundary(rest) {
            pending.extend_from_slice(&rest[..n]);
            out.push(meter.on_event(&pending));
            pending.clear();
            rest = &rest[n..];
        }
        pending.extend_from_slice(rest);
    }
    out
}

fn usage(input: u64, output: u64) -> Usage {
    Usage { input, output }
}

const OPENAI: &str = concat!(
    r#"data: {"id":"chatcmpl-9x","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o-mini","system_fingerprint":"fp_1","choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-9x","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-9x","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":" world, how are you?\n"},"logprobs":null,"finish_reason":null}],"usage":null}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-9x","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#,
    "\n\n",
    r#"data: {"id":"chatcmpl-9x","object":"chat.completion.chunk","created":1718000000,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#,
    "\n\n",
    "data: [DONE]\n\n",
);

#[test]
fn estimates_an_openai_stream_then_reconciles_to_its_usage() {
    for chunk in [1, 7, 64, OPENAI.len()] {
        let mut meter = sse_meter();
        // "Hello" is 5 bytes, one token; " world, how are you?\n" 21 bytes, five.
        let expected = [usage(30, 0), usage(30, 1), usage(30, 6), usage(30, 6), usage(12, 7), usage(12, 7)];
        assert_eq!(feed(&mut meter, OPENAI, chunk), expected, "chunks of {chunk}");
        assert_eq!(meter.on_end(), usage(12, 7));
    }
}

#[test]
fn takes_usage_from_a_llama_cpp_finish_chunk() {
    let stream = concat!(
        r#"data: {"choices":[{"finish_reason":null,"index":0,"delta":{"content":"Paris is the capital"}}],"created":1,"id":"chatcmpl-l","model":"llama","object":"chat.completion.chunk"}"#,
        "\r\n\r\n",
        r#"data: {"choices":[{"finish_reason":"stop","index":0,"delta":{}}],"created":1,"id":"chatcmpl-l","model":"llama","object":"chat.completion.chunk","usage":{"completion_tokens":4,"prompt_tokens":18,"total_tokens":22},"timings":{"predicted_n":4}}"#,
        "\r\n\r\n",
        "data: [DONE]\r\n\r\n",
    );
    let mut meter = sse_meter();
    assert_eq!(feed(&mut meter, stream, 5), [usage(30, 5), usage(18, 4), usage(18, 4)]);
    assert_eq!(meter.on_end(), usage(18, 4));
}

#[test]
fn follows_running_usage_and_estimates_past_it() {
    let stream = concat!(
        r#"data: {"choices":[{"index":0,"delta":{"content":"ab"}}],"usage":{"prompt_tokens":18,"completion_tokens":1}}"#,
        "\n\n",
        r#"data: {"choices":[{"index":0,"delta":{"content":"cd"}}],"usage":{"prompt_tokens":18,"completion_tokens":2}}"#,
        "\n\n",
        // No usage after it: estimated on top of the last one.
        r#"data: {"choices":[{"index":0,"delta":{"content":"efghijklm"}}]}"#,
        "\n\n",
    );
    let mut meter = sse_meter();
    assert_eq!(feed(&mut meter, stream, 3), [usage(18, 1), usage(18, 2), usage(18, 4)]);
}

#[test]
fn counts_tool_calls_and_reasoning() {
    let stream = concat!(
        r#"data: {"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}}]}"#,
        "\n\n",
        r#"data: {"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"location\":"}}]}}]}"#,
        "\n\n",
        r#"data: {"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}"#,
        "\n\n",
        r#"data: {"id":"c","choices":[{"index":0,"delta":{"reasoning_content":"Let me think about it"}}]}"#,
        "\n\n",
        r#"data: {"id":"c","choices":[{"index":0,"delta":{"reasoning":"ok"}}]}"#,
        "\n\n",
    );
    let mut meter = sse_meter();
    // 11 bytes of name, 12 and 8 of arguments, 21 and 2 of reasoning.
    let expected = [usage(30, 2), usage(30, 5), usage(30, 7), usage(30, 12), usage(30, 13)];
    assert_eq!(feed(&mut meter, stream, 11), expected);
}

#[test]
fn error_frames_comments_and_non_json_are_free() {
    let stream = concat!(
        ": OPENROUTER PROCESSING\n\n",
        r#"data: {"choices":[{"index":0,"delta":{"content":"four"}}]}"#,
        "\n\n",
        "event: ping\ndata: not json\n\n",
        r#"data: {"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}"#,
        "\n\n",
        "data: [DONE]\n\n",
    );
    let mut meter = sse_meter();
    assert_eq!(feed(&mut meter, stream, 9), [usage(30, 0), usage(30, 1), usage(30, 1), usage(30, 1), usage(30, 1)]);
    assert_eq!(meter.on_end(), usage(30, 1));
}

#[test]
fn joins_multi_line_data() {
    let stream = "data: {\"choices\":[{\"index\":0,\r\ndata: \"delta\":{\"content\":\"abcdefgh\"}}]}\r\n\r\n";
    let mut meter = sse_meter();
    assert_eq!(feed(&mut meter, stream, 4), [usage(30, 2)]);
}

/// Parses cutoff bytes back: the chunk's JSON, then `[DONE]`.
fn parse_cutoff(meter: &OpenAiTokenMeter) -> serde_json::Value {
    let bytes = meter.cutoff().expect("an SSE cutoff");
    let text = std::str::from_utf8(&bytes).unwrap();
    let (chunk, done) = text.strip_prefix("data: ").unwrap().split_once("\n\n").unwrap();
    assert_eq!(done, "data: [DONE]\n\n");
    serde_json::from_str(chunk).unwrap()
}

#[test]
fn cutoff_ends_every_choice_with_length() {
    let mut meter = sse_meter();
    let stream = concat!(
        r#"data: {"id":"chat\"cmpl","created":7,"model":"m\u00e9/\\x","choices":[{"index":0,"delta":{"content":"a"}},{"index":2,"delta":{"content":"b"}}]}"#,
        "\n\n",
    );
    feed(&mut meter, stream, 100);
    let chunk = parse_cutoff(&meter);
    let expected = serde_json::json!({
        "id": "chat\"cmpl", "object": "chat.completion.chunk", "created": 7, "model": "mé/\\x",
        "choices": [
            {"index": 0, "delta": {}, "finish_reason": "length"},
            {"index": 2, "delta": {}, "finish_reason": "length"},
        ],
    });
    assert_eq!(chunk, expected);

    let chunk = parse_cutoff(&sse_meter());
    assert_eq!(chunk["id"], "");
    assert_eq!(chunk["choices"], serde_json::json!([{"index": 0, "delta": {}, "finish_reason": "length"}]));
}

fn json_meter() -> OpenAiTokenMeter {
    let mut meter = OpenAiTokenMeter::with_prompt_estimate(30);
    assert_eq!(meter.on_response(&head("application/json")), usage(30, 0));
    assert_eq!(meter.cutoff(), None);
    meter
}

const COMPLETION: &str = r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o","choices":[{"index":0,"message":{"role":"assistant","content":"Hi there!"},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":3,"total_tokens":12}}"#;

#[test]
fn reconciles_a_json_body_split_over_frames() {
    let mut meter = json_meter();
    let mut seen = 0;
    for frame in COMPLETION.as_bytes().chunks(50) {
        seen += frame.len();
        assert_eq!(meter.on_data(frame), usage(30, seen as u64 / 4));
    }
    assert_eq!(meter.on_end(), usage(9, 3));
    assert_eq!(meter.on_end(), usage(9, 3));
}

#[test]
fn keeps_the_estimate_without_usage() {
    let body = COMPLETION.replace(r#""usage""#, r#""usage_elsewhere""#);
    let mut meter = json_meter();
    let estimate = meter.on_data(body.as_bytes());
    assert_eq!(meter.on_end(), estimate);

    let mut meter = json_meter();
    meter.on_data(&COMPLETION.as_bytes()[..100]); // cut short: not JSON
    assert_eq!(meter.on_end(), usage(30, 25));

    let mut meter = json_meter();
    meter.on_data(br#"{"error":{"message":"Rate limit reached","type":"requests","code":"rate_limit_exceeded"}}"#);
    assert_eq!(meter.on_end(), usage(30, 0));
}

#[test]
fn stops_keeping_a_body_past_the_cap() {
    let mut meter = json_meter();
    let filler = vec![b' '; 1 << 20];
    for _ in 0..9 {
        meter.on_data(&filler);
    }
    let last = meter.on_data(COMPLETION.as_bytes());
    assert_eq!(last.output, (9 * (1 << 20) + COMPLETION.len() as u64) / 4);
    assert!(meter.buf.capacity() == 0);
    assert_eq!(meter.on_end(), last);
}

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
    "{\r\n\t\"choices\": [ null, { \"index\": null, \"delta\": null } ],\n\"x\": [true, false, -1.5, 0, [], {}]\n}",
    "{}",
];

/// Inputs the fast reader may leave to serde (if it answers, it must agree).
const UNUSUAL: &[&str] = &[
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
    let full = serde_json::from_slice::<Chunk<'_>>(data).ok();
    let Some(fast) = scan::scan(data) else {
        return false;
    };
    assert_eq!(Some(fast), full, "{}", String::from_utf8_lossy(data));
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
    for rotation in 0..corpus.len() {
        let (mut fast, mut slow) = (sse_meter(), sse_meter());
        for chunk in corpus.iter().cycle().skip(rotation).take(corpus.len()) {
            let event = format!("data: {chunk}\n\n");
            let usage = fast.on_event(event.as_bytes());
            if let Ok(chunk) = serde_json::from_slice::<Chunk<'_>>(chunk.as_bytes()) {
                slow.add(chunk);
            }
            assert_eq!(usage, slow.usage(), "after {chunk}");
        }
        assert_eq!(fast.cutoff(), slow.cutoff());
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

#[test]
fn plain_runs_stop_at_quotes_backslashes_and_controls() {
    let naive = |s: &[u8]| s.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20).unwrap_or(s.len());
    let mut cases: Vec<Vec<u8>> = vec![b"".to_vec(), b"abc".to_vec(), "0123456789abcdé\"".into(), b"\x1f".to_vec()];
    for special in [b'"', b'\\', 0, 0x1f, b'\n'] {
        for at in 0..20 {
            let mut s = vec![b'a'; 20];
            s[at] = special;
            s.extend_from_slice(b"\"\\\x01");
            cases.push(s);
        }
    }
    // Bytes just above the specials, and high bytes, are plain.
    cases.push(vec![b'#', b']', 0x20, 0x21, 0x7f, 0x80, 0xff, 0xa2, 0xdc, b'#', b'"']);
    for s in cases {
        assert_eq!(scan::plain_run(&s), naive(&s), "{s:?}");
    }
}
