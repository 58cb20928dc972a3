#!/usr/bin/env node
// The official OpenAI SDK (openai 6.x) paying tollgate's llm_proxy example through the real mppx
// 0.11 `sessionLegacy` (v1 escrow) client: the SDK's `fetch` is replaced by one that mppx pays,
// the way paid-inference providers document it (`new OpenAI({ baseURL, apiKey, fetch })`).
//
// Flow: models.list(); one streamed chat completion (402 -> mppx opens a channel on chain ->
// the stream pauses with payment-need-voucher events, mppx answers each with a voucher on a
// bodiless POST -> text, usage, payment-receipt); an unknown model (the SDK's NotFoundError,
// nothing paid); then mppx closes the channel.
//
// mppx 0.11 answers in-band vouchers only through `sessionLegacyManager().sse()`, so the fetch
// below sends streamed completions through `sse()` and hands the SDK the messages it yields as a
// plain event stream; every other request goes through the manager's `fetch` (402 handling).
//
// stdout: one JSON object per line: {"kind":"models"|"completion"|"error"|"close"|"done", ...}.
// Exit status 0 on success; 1 with "openai_mppx_client: FAILED: <reason>" on stderr.
//
// Environment (required): BASE_URL (the proxy's .../v1), RPC_URL, PRIVATE_KEY (a payer that has not
// sent an expiring-nonce transaction on this anvil yet), CHAIN_ID, ESCROW, MODEL.
// Optional: PROMPT, MAX_DEPOSIT (whole tokens, default "1"), TIMEOUT_MS (default 120000).
import { gasBumpingHttp, guardNetwork } from './lib/local_chain.mjs';
import OpenAI from 'openai';
import { sessionLegacyManager } from 'mppx/client';
import { createClient, http, toHex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { tempoModerato } from 'viem/tempo/chains';

const out = (obj) => process.stdout.write(`${JSON.stringify(obj, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
const fail = (message) => {
  console.error(`openai_mppx_client: FAILED: ${message}`);
  process.exit(1);
};
const env = (name, fallback) => process.env[name] || fallback || fail(`missing environment variable ${name}`);

const cfg = {
  baseUrl: env('BASE_URL'),
  rpcUrl: env('RPC_URL'),
  privateKey: env('PRIVATE_KEY'),
  chainId: Number(env('CHAIN_ID')),
  escrow: env('ESCROW'),
  model: env('MODEL'),
  prompt: env('PROMPT', 'Say hello through a paid proxy.'),
  maxDeposit: env('MAX_DEPOSIT', '1'),
  timeoutMs: Number(env('TIMEOUT_MS', '120000')),
};

// Network guard: only the proxy and the chain may be contacted.
guardNetwork([cfg.baseUrl, cfg.rpcUrl]);


const account = privateKeyToAccount(cfg.privateKey);
const chain = { ...tempoModerato, id: cfg.chainId, rpcUrls: { default: { http: [cfg.rpcUrl] } } };
const client = createClient({ account, chain, transport: gasBumpingHttp(cfg.rpcUrl, 400000n), pollingInterval: 100 });

// Errors other than 402 end mppx's flow with the server's answer, so the SDK sees the real status.
class HttpAnswer extends Error {
  constructor(response) {
    super(`HTTP ${response.status}`);
    this.response = response;
  }
}
const strictFetch = async (input, init) => {
  const response = await globalThis.fetch(input, init);
  if (!response.ok && response.status !== 402) throw new HttpAnswer(response);
  return response;
};

const receipts = [];
const manager = sessionLegacyManager({ account, client, escrowContract: cfg.escrow, maxDeposit: cfg.maxDeposit, fetch: strictFetch });

// The messages mppx yields, as the event stream the SDK parses.
function eventStream(messages) {
  const encoder = new TextEncoder();
  return new ReadableStream({
    async pull(controller) {
      const { value, done } = await messages.next();
      if (done) return controller.close();
      controller.enqueue(encoder.encode(`${value.split('\n').map((line) => `data: ${line}`).join('\n')}\n\n`));
    },
    async cancel() {
      await messages.return?.();
    },
  });
}

// The fetch the SDK gets: mppx pays.
async function paidFetch(input, init = {}) {
  const url = input instanceof Request ? input.url : String(input);
  let streaming = false;
  try {
    streaming = typeof init.body === 'string' && JSON.parse(init.body).stream === true;
  } catch {}
  try {
    if (!streaming) return await manager.fetch(url, init);
    const messages = await manager.sse(url, { ...init, onReceipt: (receipt) => receipts.push(receipt) });
    return new Response(eventStream(messages), { status: 200, headers: { 'content-type': 'text/event-stream' } });
  } catch (e) {
    if (e instanceof HttpAnswer) return e.response;
    throw e;
  }
}

const openai = new OpenAI({ baseURL: cfg.baseUrl, apiKey: 'unused: paid per token with MPP', fetch: paidFetch, maxRetries: 0 });

async function main() {
  const models = await openai.models.list();
  out({ kind: 'models', data: models.data });

  const stream = await openai.chat.completions.create({
    model: cfg.model,
    messages: [{ role: 'user', content: cfg.prompt }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let usage;
  let chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    text += chunk.choices[0]?.delta?.content ?? '';
    if (chunk.usage) usage = chunk.usage;
  }
  out({ kind: 'completion', text, usage, chunks, receipt: receipts.at(-1), channelId: manager.channelId, cumulative: manager.cumulative });
  if (!usage) fail('the stream had no usage chunk');
  if (!receipts.length) fail('the stream ended without a payment-receipt event');

  try {
    await openai.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'hi' }], stream: true });
    fail('an unknown model was served');
  } catch (e) {
    if (!(e instanceof OpenAI.APIError)) throw e;
    out({ kind: 'error', status: e.status, type: e.type, code: e.code, message: e.message, name: e.constructor.name });
  }

  const closed = await manager.close();
  out({ kind: 'close', receipt: closed });
  if (!closed?.txHash) fail(`close returned no transaction: ${JSON.stringify(closed)}`);
  out({ kind: 'done', channelId: manager.channelId });
}

const timer = setTimeout(() => fail(`timed out after ${cfg.timeoutMs} ms`), cfg.timeoutMs);
main().then(
  () => {
    clearTimeout(timer);
    process.exit(0);
  },
  (e) => fail(e?.stack ?? String(e)),
);
