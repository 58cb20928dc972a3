//! `llm_proxy demo`: a local Tempo chain, the proxy with the simulated model, and a paying
//! client that streams one completion, printing each step of the payment flow.

pub mod client;
pub mod devnet;
pub mod recipe;
pub mod reserve;
pub mod rpc_front;
pub mod stack;

use std::time::{Instant, SystemTime};

use alloy::primitives::{B256, keccak256};
use serde_json::{Value, json};
use tollgate::{Amount, Price, Usage};

use crate::proxy::chat::{ChatRequest, estimate_text_tokens};
use crate::proxy::config::{Config, base_units};
use crate::proxy::payment::dollars;
use client::{Event, Flow};
use devnet::ESCROW;
use stack::{Options, Stack};

/// What the demo did, for the test that runs it.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The completion's text.
    pub text: String,
    /// Its `usage`.
    pub usage: Value,
    /// What the receipt says was spent.
    pub spent: u128,
    /// The model's price.
    pub price: Price,
    /// Vouchers paid while streaming.
    pub vouchers: usize,
    /// The payee's on-chain gain.
    pub payee_gain: u128,
    /// The payer's on-chain loss (tokens and network fees).
    pub payer_loss: u128,
}

/// Runs the demo; with `stay`, keeps the chain and the proxy up until Ctrl-C.
pub async fn run(config: &Config, stay: bool) -> Result<Outcome, String> {
    let started = Instant::now();
    let decimals = config.payment.decimals;
    let usd = |units: u128| format!("${}", money(units, decimals));
    let path_usd = |units: u128| format!("{} pathUSD", money(units, decimals));
    println!("tollgate llm_proxy demo: an OpenAI-compatible API paid per token over a Tempo payment channel\n");

    let stack = Stack::start(config, Options::demo(config)).await?;
    let (devnet, proxy, server, payee) = (&stack.devnet, &stack.proxy, &stack.server, &stack.payee);
    println!(
        "[chain]  anvil --network tempo at {} (chain {}), v1 escrow installed at {ESCROW}",
        devnet.rpc_url(),
        devnet.chain_id
    );
    let model = proxy.catalog.models()[0].clone();
    println!(
        "[proxy]  listening on {} with the SIMULATED upstream model \"{}\" (no API key needed)",
        server.url(""),
        model.id
    );
    println!(
        "         voucher window {} tokens, service fee {}%",
        config.demo.voucher_window_tokens, config.server.service_fee_percent
    );

    let payer = devnet.signer(2);
    let mut client = stack.client(2);
    let (_, models) = client.get_json("/v1/models").await?;
    for m in models["data"].as_array().into_iter().flatten() {
        let p = &m["pricing"];
        let price = |key: &str| dollars(p[key].as_f64().unwrap_or(f64::NAN));
        println!(
            "[models] GET /v1/models: {} costs ${} per 1M input and ${} per 1M output tokens ({}, fee included)",
            m["id"].as_str().unwrap_or("?"),
            price("input_per_1m"),
            price("output_per_1m"),
            p["currency"].as_str().unwrap_or("?")
        );
    }
    let before = (devnet.balance(payer.address()).await?, devnet.balance(payee.address()).await?);
    println!("\nbalances before: payer {} {}", payer.address(), path_usd(before.0));
    println!("                 payee {} {}", payee.address(), path_usd(before.1));

    let request = json!({
        "model": model.id,
        "messages": [{ "role": "user", "content": config.demo.prompt }],
        "temperature": 0.2,
    });
    println!("\n-> POST /v1/chat/completions (no payment)  {request}");
    let (status, headers, problem) = client.ask(&request).await?;
    let challenge =
        client.challenge().cloned().ok_or_else(|| format!("expected a 402 challenge, got {status}: {problem}"))?;
    let offer = challenge.decode_request().map_err(|e| e.to_string())?;
    let header = headers.get(http::header::WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    println!("<- {status}  {}", problem["error"]["message"].as_str().unwrap_or_default());
    println!("   WWW-Authenticate: {}…", &header[..header.len().min(110)]);
    println!(
        "   price before paying: amount {} base units ({}) per {}, {}",
        offer["amount"].as_str().unwrap_or("?"),
        usd(offer["amount"].as_str().and_then(|a| a.parse().ok()).unwrap_or(0)),
        offer["unitType"].as_str().unwrap_or("?"),
        challenge.description.as_deref().unwrap_or("")
    );
    println!(
        "   method tempo/session, suggested deposit {}",
        usd(offer["suggestedDeposit"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0))
    );

    let deposit = base_units(config.demo.deposit, decimals)?;
    let salt = keccak256(format!("{:?}{}", SystemTime::now(), std::process::id()));
    println!(
        "\n-> open a channel: approve + open on the escrow, {} deposit, first voucher {}",
        usd(deposit),
        offer["amount"].as_str().unwrap_or("?")
    );
    let receipt = client.open(deposit, salt, devnet.tx_params(payer.address()).await?).await?;
    let channel = client.channel().unwrap_or(B256::ZERO);
    println!("<- 204  channel {channel:#x} open on chain, tx {}", receipt.tx_hash.as_deref().unwrap_or("?"));

    let chat = ChatRequest::parse(request.to_string().as_bytes()).map_err(|e| e.message)?;
    println!(
        "\n-> POST /v1/chat/completions paid with a voucher for {} (the prompt is at most {} tokens: paid before the upstream is called)",
        usd(client.cumulative()),
        chat.prompt_tokens
    );
    let mut output = 0u64;
    let cost = |input: u64, output: u64| model.price.cost(Usage { input, output }).map_or(0, Amount::get);
    let streamed = client
        .stream(&request, |event| {
            match event {
                Event::Chunk(chunk) => {
                    if let Some(text) = chunk["choices"][0]["delta"]["content"].as_str().filter(|t| !t.is_empty()) {
                        output += estimate_text_tokens(text.len());
                        let shown = format!("{text:?}");
                        println!(
                            "   token  {shown:<16} output {output:>3} tokens, running cost {}",
                            usd(cost(chat.prompt_tokens, output))
                        );
                    }
                    if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
                        println!(
                            "   usage  {} prompt + {} completion tokens (the upstream's final count)",
                            usage["prompt_tokens"], usage["completion_tokens"]
                        );
                    }
                }
                Event::NeedVoucher { required, accepted } => {
                    println!(
                        "   || paused: payment-need-voucher, the server asks for {} (accepted so far {})",
                        usd(*required),
                        usd(*accepted)
                    )
                }
                Event::Paid { cumulative } => {
                    println!("   >> voucher signed for {} and accepted (204); the stream resumes", usd(*cumulative))
                }
                Event::Error(error) => println!("   error frame: {error}"),
                Event::Done => println!("   data: [DONE]"),
                Event::Receipt(receipt) => println!(
                    "   payment-receipt: spent {} for {} tokens (prompt and completion), accepted {}",
                    usd(receipt["spent"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0)),
                    receipt["units"],
                    usd(receipt["acceptedCumulative"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0)),
                ),
            }
            Flow::Continue
        })
        .await?;
    let receipt = streamed.receipt.clone().ok_or("the stream ended without a payment-receipt event")?;
    let spent: u128 = receipt["spent"].as_str().and_then(|s| s.parse().ok()).ok_or("the receipt has no spent")?;
    let usage = streamed.usage.clone().unwrap_or(Value::Null);
    println!("<- 200  {} vouchers; reply: {}", streamed.vouchers, streamed.text);

    println!("\n-> close the channel with a final voucher for {} (what the receipt says was spent)", usd(spent));
    let closed = client.close(spent).await?;
    println!(
        "<- 204  close tx {}: the escrow pays {} to the payee and refunds {} to the payer",
        closed.tx_hash.as_deref().unwrap_or("?"),
        usd(spent),
        usd(deposit - spent)
    );

    let after = (devnet.balance(payer.address()).await?, devnet.balance(payee.address()).await?);
    let (payer_loss, payee_gain) = (before.0.saturating_sub(after.0), after.1.saturating_sub(before.1));
    println!("\nbalances after:  payer {} {}", payer.address(), path_usd(after.0));
    println!("                 payee {} {}", payee.address(), path_usd(after.1));
    let priced = usage_cost(&model.price, &usage);
    let verdict = if Some(payee_gain) == priced { "exactly the priced usage" } else { "NOT the priced usage" };
    println!(
        "   payee +{} ({verdict}: {} prompt x ${} + {} completion x ${} per 1M tokens = {})",
        usd(payee_gain),
        usage["prompt_tokens"],
        per_million(&model.price.input, decimals),
        usage["completion_tokens"],
        per_million(&model.price.output, decimals),
        priced.map_or("?".into(), usd),
    );
    println!(
        "   payer -{} ({} for tokens + {} network fees, paid in pathUSD)",
        usd(payer_loss),
        usd(spent),
        usd(payer_loss.saturating_sub(spent))
    );
    println!("\ndone in {:.1} s", started.elapsed().as_secs_f64());

    if stay {
        println!(
            "\nstill running: proxy {} , chain {} (payee key: dev account 1). Ctrl-C stops.",
            server.url(""),
            devnet.rpc_url()
        );
        let target = recipe::Target { proxy: server.url(""), devnet, model: &model.id, first_payer: 3 };
        println!("\n{}", recipe::render(&target).await);
        let _ = tokio::signal::ctrl_c().await;
    }
    Ok(Outcome {
        text: streamed.text,
        usage,
        spent,
        price: model.price.clone(),
        vouchers: streamed.vouchers,
        payee_gain,
        payer_loss,
    })
}

/// What `usage` (an OpenAI `usage` object) costs at `price`.
pub fn usage_cost(price: &Price, usage: &Value) -> Option<u128> {
    let input = usage["prompt_tokens"].as_u64()?;
    let output = usage["completion_tokens"].as_u64()?;
    price.cost(Usage { input, output }).map(Amount::get)
}

/// Base units as an exact decimal figure (`0.001224`).
fn money(units: u128, decimals: u32) -> String {
    let scale = 10u128.pow(decimals);
    format!("{}.{:0width$}", units / scale, units % scale, width = decimals as usize)
}

fn per_million(rate: &tollgate::Rate, decimals: u32) -> String {
    let units = rate.amount().get() as f64 * 1e6 / rate.per() as f64;
    dollars(units / 10f64.powi(decimals as i32))
}
