//! What `demo --stay` and `serve --chain local` print once the proxy serves on the local
//! chain: copy-pasteable commands that point a client at it (curl for the 402, discovery,
//! the openai SDK paying through mppx, the mppx CLI).
//!
//! The commands are tailored to what the proxy really offers: an unpaid request is asked
//! first, and only the clients that can pay its challenges are shown (the v2 `tempo()`
//! client and the CLI need a v2 session challenge; the CLI also needs a chain id that
//! `viem/tempo/chains` knows).

use serde_json::{Value, json};
use tollgate::wire::mpp::Challenge;

use super::devnet::{Devnet, ESCROW};

/// Chain ids the mppx CLI resolves (`viem/tempo/chains`): mainnet, Moderato, devnet, localnet.
const CLI_CHAINS: [u64; 4] = [4217, 42431, 31318, 1337];

/// Where the clients go.
#[derive(Debug)]
pub struct Target<'a> {
    /// The proxy's root URL (`http://127.0.0.1:8402`).
    pub proxy: String,
    /// The chain.
    pub devnet: &'a Devnet,
    /// A model it sells.
    pub model: &'a str,
    /// The first dev account free to pay (each client run gets the next one: anvil 1.7.1
    /// mines only the first expiring-nonce transaction of a sender).
    pub first_payer: usize,
}

/// The session protocols (`v1`, `v2`) of the 402 the proxy answers an unpaid request with.
async fn offered(proxy: &str, request: &Value) -> Vec<String> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http();
    let Ok(post) = http::Request::post(format!("{proxy}/v1/chat/completions"))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from(request.to_string())))
    else {
        return Vec::new();
    };
    let Ok(response) = client.request(post).await else { return Vec::new() };
    let challenges = Challenge::parse_all(response.headers().get_all(http::header::WWW_AUTHENTICATE));
    let _ = response.into_body().collect().await;
    let mut protocols: Vec<String> = challenges
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c.decode_request().ok())
        .filter_map(|r| r["methodDetails"]["sessionProtocol"].as_str().map(str::to_owned))
        .collect();
    protocols.dedup();
    protocols
}

/// The recipe, as printed.
pub async fn render(target: &Target<'_>) -> String {
    let Target { proxy, devnet, model, first_payer } = target;
    // Clients go through the dev chain's gas-raising front (anvil under-estimates Tempo batches).
    let rpc = devnet.client_rpc_url();
    let chain = devnet.chain_id;
    let request = json!({ "model": model, "messages": [{ "role": "user", "content": "Hello!" }] });
    let protocols = offered(proxy, &request).await;
    let key = |n: usize| devnet.key_hex(first_payer + n);
    let mut text = format!(
        "How to point a client at it (run from the tollgate checkout: `npm ci` installed the pinned mppx, viem\n\
         and openai). Payers are anvil dev accounts, each holding pathUSD; use each one for a single client run\n\
         (anvil 1.7.1 mines only a sender's first expiring-nonce transaction).\n\n\
         # the 402 and its price, unpaid (payment challenges in WWW-Authenticate: Payment)\n\
         curl -si {proxy}/v1/chat/completions -H 'content-type: application/json' \\\n  -d '{request}'\n\n\
         # free: models and prices, the discovery documents, and mppx's own check of them\n\
         # (its last step, paying, funds a wallet from the public testnet faucet)\n\
         curl -s {proxy}/v1/models\n\
         curl -s {proxy}/llms.txt\n\
         npx mppx validate {proxy}\n"
    );
    if protocols.iter().any(|p| p == "v2") {
        text.push_str(&format!(
            "\n# the openai SDK paying through mppx: the Tempo guide's client, Mppx.create + tempo() + fetch\n\
             node --input-type=module <<'EOF'\n\
             import OpenAI from 'openai'\n\
             import {{ Mppx, tempo }} from 'mppx/client'\n\
             import {{ createClient }} from 'viem'\n\
             import {{ privateKeyToAccount }} from 'viem/accounts'\n\
             import {{ tempoLocalnet }} from 'viem/tempo/chains'\n\
             import {{ gasBumpingHttp }} from './tests/js/lib/local_chain.mjs' // anvil under-estimates Tempo batch gas\n\
             const rpc = '{rpc}'\n\
             const chain = {{ ...tempoLocalnet, id: {chain}, rpcUrls: {{ default: {{ http: [rpc] }} }} }}\n\
             Mppx.create({{ methods: [tempo({{\n  \
               account: privateKeyToAccount('{}'),\n  \
               maxDeposit: '1',\n  \
               getClient: () => createClient({{ chain, transport: gasBumpingHttp(rpc, 400000n) }}),\n\
             }})] }})\n\
             const openai = new OpenAI({{ baseURL: '{proxy}/v1', apiKey: 'paid-with-mppx', fetch }})\n\
             const stream = await openai.chat.completions.create({{\n  \
               model: '{model}', stream: true, messages: [{{ role: 'user', content: 'Hello!' }}],\n\
             }})\n\
             for await (const chunk of stream) process.stdout.write(chunk.choices[0]?.delta?.content ?? '')\n\
             console.log()\n\
             EOF\n",
            key(0)
        ));
        if CLI_CHAINS.contains(&chain) {
            text.push_str(&format!(
                "\n# the mppx CLI (v2 sessions)\n\
                 MPPX_PRIVATE_KEY={} npx mppx -r {rpc} {proxy}/v1/chat/completions \\\n  -J '{request}'\n",
                key(1)
            ));
        }
    }
    if protocols.iter().any(|p| p == "v1") {
        text.push_str(&format!(
            "\n# the openai SDK paying through mppx's v1 client (sessionLegacyManager, streamed through its .sse())\n\
             BASE_URL={proxy}/v1 RPC_URL={rpc} CHAIN_ID={chain} ESCROW={} MODEL={model} \\\n  \
             PRIVATE_KEY={} node tests/js/openai_mppx_client.mjs\n",
            ESCROW.to_checksum(None),
            key(2)
        ));
    }
    text
}
