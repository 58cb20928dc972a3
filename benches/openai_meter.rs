//! `OpenAiTokenMeter::on_event` alone, over 1000 realistic streamed chunks per provider
//! shape (OpenAI, vLLM with running usage, llama.cpp, DeepSeek reasoning, tool calls, text
//! with escapes and non-ASCII), and a mix of them all.

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use http::{HeaderValue, Response, header};
use tollgate::Usage;
use tollgate::meter::{Meter, OpenAiTokenMeter};

const WORDS: [&str; 8] = [" the", " quick", " brown", " fox", " jumps", " over", " lazy", " dogs"];

/// OpenAI pads each chunk with a random `obfuscation` string of varying length.
fn obfuscation(i: usize) -> String {
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut x = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let len = 2 + (x % 12) as usize;
    (0..len)
        .map(|_| {
            x = x.rotate_left(7).wrapping_mul(0x2545_f491_4f6c_dd1d);
            char::from(CHARS[(x >> 58) as usize % CHARS.len()])
        })
        .collect()
}

fn openai(i: usize) -> String {
    let (w, pad) = (WORDS[i % WORDS.len()], obfuscation(i));
    format!(
        r#"{{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[{{"index":0,"delta":{{"content":"{w}"}},"logprobs":null,"finish_reason":null}}],"usage":null,"obfuscation":"{pad}"}}"#
    )
}

fn vllm(i: usize) -> String {
    let w = WORDS[i % WORDS.len()];
    format!(
        r#"{{"id":"chatcmpl-4d3a0b9e2f1c4c8e9a7b6d5c4b3a2918","object":"chat.completion.chunk","created":1731000000,"model":"meta-llama/Llama-3.1-8B-Instruct","choices":[{{"index":0,"delta":{{"content":"{w}"}},"logprobs":null,"finish_reason":null}}],"usage":{{"prompt_tokens":18,"total_tokens":{},"completion_tokens":{}}}}}"#,
        19 + i,
        1 + i
    )
}

fn llama_cpp(i: usize) -> String {
    let w = WORDS[i % WORDS.len()];
    format!(
        r#"{{"choices":[{{"finish_reason":null,"index":0,"delta":{{"content":"{w}"}}}}],"created":1731000000,"id":"chatcmpl-ZkY3hV2sN8qL1mP0","model":"llama-3.2-3b-instruct-q4_k_m.gguf","system_fingerprint":"b4600-b1f9c1e2","object":"chat.completion.chunk"}}"#
    )
}

fn reasoning(i: usize) -> String {
    let w = WORDS[i % WORDS.len()];
    format!(
        r#"{{"id":"0f2a6d3e-8c4b-4c1a-9e7f-5b2d1c0a9e8f","object":"chat.completion.chunk","created":1737500000,"model":"deepseek-reasoner","system_fingerprint":"fp_7e73fd9a08","choices":[{{"index":0,"delta":{{"content":null,"reasoning_content":"{w}"}},"logprobs":null,"finish_reason":null}}]}}"#
    )
}

fn tool_call(i: usize) -> String {
    let args = [r#"{\""#, r#"location"#, r#"\":\""#, r#"Paris"#, r#", France"#, r#"\"}"#][i % 6];
    format!(
        r#"{{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion.chunk","created":1741570283,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"function":{{"arguments":"{args}"}}}}]}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
    )
}

fn escaped(i: usize) -> String {
    let text = [r#"\n\n"#, r#"    let x = \"caf\u00e9\";\n"#, "naïve café — ok", r#"}\n```"#][i % 4];
    format!(
        r#"{{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-2024-08-06","service_tier":"default","system_fingerprint":"fp_eb9dce56a8","choices":[{{"index":0,"delta":{{"content":"{text}"}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#
    )
}

/// 1000 events of one shape, as an upstream streams them.
fn events(make: Shape) -> Vec<Vec<u8>> {
    (0..1000).map(|i| format!("data: {}\n\n", make(i)).into_bytes()).collect()
}

/// A provider's chunk shape: the `i`th chunk of a stream.
type Shape = fn(usize) -> String;

fn bench(c: &mut Criterion) {
    let mut head = Response::new(()).into_parts().0;
    head.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    let shapes: [(&str, Shape); 6] = [
        ("openai", openai),
        ("vllm_usage", vllm),
        ("llama_cpp", llama_cpp),
        ("reasoning", reasoning),
        ("tool_calls", tool_call),
        ("escaped", escaped),
    ];
    let mut corpora: Vec<_> = shapes.iter().map(|&(name, make)| (name, events(make))).collect();
    // Every chunk of another shape than the last: each one read from the start.
    let mixed = (0..1000).map(|i| corpora[i % shapes.len()].1[i].clone()).collect();
    corpora.push(("mixed", mixed));

    let mut group = c.benchmark_group("openai_meter_1000_events");
    for (name, corpus) in &corpora {
        group.throughput(Throughput::Elements(corpus.len() as u64));
        group.bench_with_input(BenchmarkId::new("on_event", name), corpus, |b, corpus| {
            b.iter(|| {
                let mut meter = OpenAiTokenMeter::with_prompt_estimate(30);
                meter.on_response(&head);
                let mut last = Usage::default();
                for event in corpus {
                    last = meter.on_event(event);
                }
                assert!(last.output > 0);
                last
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
