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
fn bounds_an_openai_stream_by_its_bytes_then_reconciles_to_its_usage() {
    for chunk in [1, 7, 64, OPENAI.len()] {
        let mut meter = sse_meter();
        // "Hello" is 5 bytes, at most 5 tokens; " world, how are you?\n" 21 bytes, 21.
        let expected = [usage(30, 0), usage(30, 5), usage(30, 26), usage(30, 26), usage(12, 7), usage(12, 7)];
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
    assert_eq!(feed(&mut meter, stream, 5), [usage(30, 20), usage(18, 4), usage(18, 4)]);
    assert_eq!(meter.on_end(), usage(18, 4));
}

#[test]
fn follows_running_usage_and_counts_bytes_past_it() {
    let stream = concat!(
        r#"data: {"choices":[{"index":0,"delta":{"content":"ab"}}],"usage":{"prompt_tokens":18,"completion_tokens":1}}"#,
        "\n\n",
        r#"data: {"choices":[{"index":0,"delta":{"content":"cd"}}],"usage":{"prompt_tokens":18,"completion_tokens":2}}"#,
        "\n\n",
        // No usage after it: its bytes count on top of the last one.
        r#"data: {"choices":[{"index":0,"delta":{"content":"efghijklm"}}]}"#,
        "\n\n",
    );
    let mut meter = sse_meter();
    assert_eq!(feed(&mut meter, stream, 3), [usage(18, 1), usage(18, 2), usage(18, 11)]);
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
    let expected = [usage(30, 11), usage(30, 23), usage(30, 31), usage(30, 52), usage(30, 54)];
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
    assert_eq!(feed(&mut meter, stream, 9), [usage(30, 0), usage(30, 4), usage(30, 4), usage(30, 4), usage(30, 4)]);
    assert_eq!(meter.on_end(), usage(30, 4));
}

#[test]
fn joins_multi_line_data() {
    let stream = "data: {\"choices\":[{\"index\":0,\r\ndata: \"delta\":{\"content\":\"abcdefgh\"}}]}\r\n\r\n";
    let mut meter = sse_meter();
    assert_eq!(feed(&mut meter, stream, 4), [usage(30, 8)]);
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
        assert_eq!(meter.on_data(frame), usage(30, seen as u64));
    }
    assert_eq!(meter.on_end(), usage(9, 3));
    assert_eq!(meter.on_end(), usage(9, 3));
}

#[test]
fn keeps_the_bound_without_usage() {
    let body = COMPLETION.replace(r#""usage""#, r#""usage_elsewhere""#);
    let mut meter = json_meter();
    let bound = meter.on_data(body.as_bytes());
    assert_eq!(meter.on_end(), bound);

    let mut meter = json_meter();
    meter.on_data(&COMPLETION.as_bytes()[..100]); // cut short: not JSON
    assert_eq!(meter.on_end(), usage(30, 100));

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
    assert_eq!(last.output, 9 * (1 << 20) + COMPLETION.len() as u64);
    assert!(meter.buf.capacity() == 0);
    assert_eq!(meter.on_end(), last);
}

/// A meter built the way the layer builds it for `quote`, from `maker`.
fn made(maker: &OpenAiTokenMeter, quote: Quote) -> OpenAiTokenMeter {
    let (request, _) = http::Request::new(()).into_parts();
    let mut meter = maker.make_meter(&request, &quote);
    meter.on_response(&head("text/event-stream"));
    meter
}

fn tokens() -> Quote {
    Quote::new(Price::tokens(Rate::FREE, Rate::per_unit(Amount::new(1))))
}

fn content(text: &str) -> String {
    format!("data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"{text}\"}}}}]}}\n\n")
}

#[test]
fn allows_for_hidden_output_up_to_the_cap_from_the_first_choice() {
    let mut meter = made(&OpenAiTokenMeter::new(), tokens().max_output(100));
    // Nothing but an error: no output, no allowance.
    let error = "data: {\"error\":{\"message\":\"busy\"}}\n\n";
    assert_eq!(feed(&mut meter, error, 7), [usage(0, 0)]);
    // The first choice brings the whole cap; text past the cap still counts.
    let stream = content("Hello") + &content(&"x".repeat(150));
    assert_eq!(feed(&mut meter, &stream, 9), [usage(0, 100), usage(0, 155)]);
    // The usage lowers the count to the cap (it may still hide more), the end to the usage.
    let stream = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":90}}\n\n";
    assert_eq!(feed(&mut meter, stream, 9), [usage(4, 100)]);
    assert_eq!(meter.on_end(), usage(4, 90));
    assert_eq!(meter.on_end(), usage(4, 90));
}

#[test]
fn a_usage_above_the_bound_raises_the_count_until_the_end() {
    let maker = OpenAiTokenMeter::new().hidden_output(10);
    let mut meter = made(&maker, tokens().max_output(100));
    let stream = content("Paris.") + "data: {\"choices\":[],\"usage\":{\"completion_tokens\":300}}\n\n";
    // 6 visible + 10 allowed; then the provider says 300, past even the cap.
    assert_eq!(feed(&mut meter, &stream, 5), [usage(0, 16), usage(0, 300)]);
    assert_eq!(meter.on_end(), usage(0, 300));
}

#[test]
fn the_makers_cap_applies_when_the_quote_names_none() {
    let maker = OpenAiTokenMeter::new().max_output(50);
    assert_eq!(feed(&mut made(&maker, tokens()), &content("a"), 64), [usage(0, 50)]);
    assert_eq!(feed(&mut made(&maker, tokens().max_output(20)), &content("a"), 64), [usage(0, 20)]);
    // Without any cap or allowance only the visible text counts.
    assert_eq!(feed(&mut made(&OpenAiTokenMeter::new(), tokens()), &content("a"), 64), [usage(0, 1)]);
}

#[test]
fn a_json_body_usage_only_lowers_the_count() {
    let maker = OpenAiTokenMeter::new().hidden_output(0);
    let (request, _) = http::Request::new(()).into_parts();
    let mut meter = maker.make_meter(&request, &tokens());
    meter.on_response(&head("application/json"));
    let body = br#"{"choices":[{"index":0,"message":{"content":"hi"}}],"usage":{"prompt_tokens":0,"completion_tokens":100000}}"#;
    let bound = meter.on_data(body);
    assert_eq!(bound, usage(0, body.len() as u64));
    assert_eq!(meter.on_end(), bound, "the body went out before its usage could be read");
}

mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever the text and however the provider bills it, as long as the hidden tokens
        /// stay within the allowance (a token is at least a byte, the cap holds): by the time
        /// the last content chunk is counted the count covers the final usage, and the end
        /// only ever lowers the count.
        #[test]
        fn content_is_covered_before_it_goes_out(
            pieces in prop::collection::vec("[a-zé😀 ]{0,12}", 1..20),
            visible_share in 0.0..=1.0f64,
            hidden in 0..400u64,
            extra_allowance in 0..100u64,
            cap_slack in prop::option::of(0..200u64),
            split in 1..64usize,
        ) {
            let bytes: u64 = pieces.iter().map(|p| p.len() as u64).sum();
            let visible_tokens = (bytes as f64 * visible_share) as u64;
            let completion = visible_tokens + hidden;
            let mut maker = OpenAiTokenMeter::new().hidden_output(hidden + extra_allowance);
            let mut quote = tokens();
            if let Some(slack) = cap_slack {
                quote = quote.max_output(completion + slack);
                maker = OpenAiTokenMeter::new();
            }
            let mut meter = made(&maker, quote);
            let stream: String = pieces.iter().map(|p| content(p)).collect();
            let counts = feed(&mut meter, &stream, split);
            let last_content = counts.last().copied().unwrap_or_default();
            prop_assert!(last_content.output >= completion, "{last_content:?} < {completion}");
            let tail = format!("data: {{\"choices\":[],\"usage\":{{\"prompt_tokens\":0,\"completion_tokens\":{completion}}}}}\n\ndata: [DONE]\n\n");
            let after = feed(&mut meter, &tail, split);
            let highest = counts.iter().chain(&after).map(|u| u.output).max().unwrap_or(0);
            prop_assert!(after.iter().all(|u| u.output >= completion));
            prop_assert_eq!(meter.on_end(), usage(0, completion));
            prop_assert!(completion <= highest);
        }
    }
}
