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

#[path = "../chain/mod.rs"]
mod chain;
mod charge;
mod concurrency;
mod cost;
mod errors;
mod fields;
mod flows;
mod guide;
mod hardening;
mod nonstream;
mod openai;
mod prepaid;
mod prepay;
mod recipe;
mod shared_store;
mod support;
mod surface;
#[allow(unused_imports)]
#[path = "../support/mod.rs"]
mod test_support;
mod v1_plain;
mod validate;
mod x402;
#[path = "../x402_support/mod.rs"]
mod x402_support;
