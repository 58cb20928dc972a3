//! The paid OpenAI-compatible LLM proxy example (`examples/llm_proxy`), end to end on a local
//! Tempo chain: the OpenAI SDK paying through mppx, the demo, every error of the table
//! (each charged nothing), failover, mid-stream failures charged only for what was delivered.

#![cfg(feature = "full")]

#[allow(dead_code)]
#[path = "../../examples/llm_proxy/demo/mod.rs"]
mod demo;
#[allow(dead_code)]
#[path = "../../examples/llm_proxy/proxy/mod.rs"]
mod proxy;

mod concurrency;
mod errors;
mod flows;
mod hardening;
mod openai;
mod prepay;
mod support;
#[allow(unused_imports)]
#[path = "../support/mod.rs"]
mod test_support;
