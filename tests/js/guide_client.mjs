#!/usr/bin/env node
// The Tempo guide's client ("Accept pay-as-you-go payments", ../shared/seeds/
// tempo-payg-sessions-guide.txt) paying tollgate's llm_proxy example, as the guide shows it:
//
//   const mppx = Mppx.create({ methods: [tempo({ account, maxDeposit: '1' })] })
//   const res = await fetch(url)            // the global fetch, which Mppx.create wraps
//
// and the official openai SDK handed that fetch. `tempo()` is mppx 0.11's v2 (TIP-1034)
// session client; its plain fetch answers the proxy's in-band `payment-need-voucher` events
// itself. Two additions to the guide's call, both needed only because this is a local chain:
// `getClient` (mppx knows RPC URLs for Tempo mainnet and testnet only; the viem client here
// raises anvil's gas estimate, which ignores Tempo call batches) and `onChannelUpdate` (an
// observer: it reports the channel id, it changes nothing).
//
// Flow: STREAMED completions on one channel (the first through plain fetch opens it on chain,
// the rest send vouchers), alternating plain fetch and the SDK; then NON_STREAMED
// non-streamed completions through the SDK (default 0). The client never closes: the proxy
// closes an idle v2 channel itself.
//
// stdout: JSON lines {"kind":"completion"|"done", ...}. Exit 0 on success; 1 with
// "guide_client: FAILED: <reason>" on stderr.
// Env (required): BASE_URL (the proxy's .../v1), RPC_URL, PRIVATE_KEY, CHAIN_ID, MODEL.
// Optional: PROMPT, MAX_DEPOSIT (default "1"), STREAMED (default 3), NON_STREAMED (default 0),
// TIMEOUT_MS (default 120000).
import { gasBumpingHttp, guardNetwork } from './lib/local_chain.mjs';
import OpenAI from 'openai';
import { Mppx, tempo } from 'mppx/client';
import { createClient } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { tempoModerato } from 'viem/tempo/chains';

const out = (obj) => process.stdout.write(`${JSON.stringify(obj, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
const fail = (message) => {
  console.error(`guide_client: FAILED: ${message}`);
  process.exit(1);
};
const env = (name, fallback) => process.env[name] || fallback || fail(`missing environment variable ${name}`);

const cfg = {
  baseUrl: env('BASE_URL'),
  rpcUrl: env('RPC_URL'),
  privateKey: env('PRIVATE_KEY'),
  chainId: Number(env('CHAIN_ID')),
  model: env('MODEL'),
  prompt: env('PROMPT', 'Say hello through a paid proxy.'),
  maxDeposit: env('MAX_DEPOSIT', '1'),
  streamed: Number(env('STREAMED', '3')),
  nonStreamed: Number(env('NON_STREAMED', '0')),
  maxTokens: Number(env('MAX_TOKENS', '512')),
  timeoutMs: Number(env('TIMEOUT_MS', '120000')),
};

// Only the proxy and the chain may be contacted.
guardNetwork([cfg.baseUrl, cfg.rpcUrl]);

const account = privateKeyToAccount(cfg.privateKey);
const chain = { ...tempoModerato, id: cfg.chainId, rpcUrls: { default: { http: [cfg.rpcUrl] } } };
const client = createClient({ account, chain, transport: gasBumpingHttp(cfg.rpcUrl, 400000n), pollingInterval: 100 });
const channels = new Set();

// The guide's client.
Mppx.create({
  methods: [
    tempo({
      account,
      maxDeposit: cfg.maxDeposit,
      getClient: () => client,
      onChannelUpdate: (entry) => entry?.channelId && channels.add(entry.channelId),
    }),
  ],
});

const request = (stream) => ({
  model: cfg.model,
  messages: [{ role: 'user', content: cfg.prompt }],
  // A non-streamed answer cannot ask for vouchers in band: its cap is its price, paid up front.
  ...(stream ? { stream: true, stream_options: { include_usage: true } } : { max_tokens: cfg.maxTokens }),
});

// A streamed completion through the plain fetch, read as the SSE it is.
async function viaFetch() {
  const res = await fetch(`${cfg.baseUrl}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(request(true)),
  });
  if (!res.ok) fail(`fetch answered ${res.status}: ${await res.text()}`);
  let text = '';
  let usage;
  const events = [];
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let at;
    while ((at = buf.indexOf('\n\n')) >= 0) {
      const raw = buf.slice(0, at);
      buf = buf.slice(at + 2);
      let event = 'message';
      const data = [];
      for (const line of raw.split('\n')) {
        if (line.startsWith('event: ')) event = line.slice(7);
        else if (line.startsWith('data: ')) data.push(line.slice(6));
      }
      if (!data.length) continue;
      const joined = data.join('\n');
      if (event !== 'message') {
        events.push({ event, data: joined });
        continue;
      }
      if (joined === '[DONE]') continue;
      const chunk = JSON.parse(joined);
      if (chunk.error) fail(`error frame: ${joined}`);
      text += chunk.choices?.[0]?.delta?.content ?? '';
      if (chunk.usage) usage = chunk.usage;
    }
  }
  return { text, usage, events };
}

const openai = new OpenAI({ baseURL: cfg.baseUrl, apiKey: 'unused: paid per token with MPP', fetch, maxRetries: 0 });

async function viaSdk() {
  const stream = await openai.chat.completions.create(request(true));
  let text = '';
  let usage;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta?.content ?? '';
    if (chunk.usage) usage = chunk.usage;
  }
  return { text, usage, events: [] };
}

async function main() {
  for (let i = 0; i < cfg.streamed; i++) {
    const via = i % 2 === 0 ? 'fetch' : 'openai';
    const result = via === 'fetch' ? await viaFetch() : await viaSdk();
    out({ kind: 'completion', via, stream: true, ...result });
    if (!result.usage) fail(`streamed completion ${i} (${via}) had no usage chunk`);
  }
  for (let i = 0; i < cfg.nonStreamed; i++) {
    const completion = await openai.chat.completions.create(request(false));
    out({ kind: 'completion', via: 'openai', stream: false, text: completion.choices?.[0]?.message?.content, usage: completion.usage });
  }
  out({ kind: 'done', channels: [...channels] });
}

const timer = setTimeout(() => fail(`timed out after ${cfg.timeoutMs} ms`), cfg.timeoutMs);
main().then(
  () => {
    clearTimeout(timer);
    process.exit(0);
  },
  (e) => fail(e?.stack ?? String(e)),
);
