#!/usr/bin/env node
// Concurrent streams on one channel with the real mppx 0.11 v1 client (`sessionLegacyManager`),
// as tests/js/mppx_session_client.mjs uses it: one streamed chat completion opens the channel,
// then STREAMS completions run at once through the same manager's `.sse()` (each answering its
// own payment-need-voucher events with vouchers on bodiless POSTs), then the manager closes.
// A voucher signed for one stream can land after a higher one signed for another: the server
// must answer it 2xx (idempotent), or mppx errors that stream.
//
// stdout: one JSON object per line:
//   {"kind":"stream","index","messages","done","usage","receipt","error"[,"last"]}   one per stream
//     ("last": the last message of a stream that did not reach [DONE], to tell why it ended)
//   {"kind":"vouchers","statuses":[...]}                                   every voucher POST's status
//   {"kind":"close","receipt"}  {"kind":"done","channelId","cumulative"}
// Exit status 0 when every stream completed; 1 with "mppx_concurrent: FAILED: <reason>" on stderr.
//
// Environment (required): URL (the proxy's /v1/chat/completions), RPC_URL, PRIVATE_KEY (a payer
// that has not sent an expiring-nonce transaction on this anvil yet), CHAIN_ID, ESCROW, MODEL.
// Optional: STREAMS (default 8), MAX_DEPOSIT (whole tokens, default "1"), TIMEOUT_MS (default 120000).
import { Credential } from 'mppx';
import { sessionLegacyManager } from 'mppx/client';
import { createClient } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { tempoModerato } from 'viem/tempo/chains';
import { gasBumpingHttp, guardNetwork } from './lib/local_chain.mjs';

const out = (obj) => process.stdout.write(`${JSON.stringify(obj, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
const fail = (message) => {
  console.error(`mppx_concurrent: FAILED: ${message}`);
  process.exit(1);
};
const env = (name, fallback) => process.env[name] || fallback || fail(`missing environment variable ${name}`);

const cfg = {
  url: env('URL'),
  rpcUrl: env('RPC_URL'),
  privateKey: env('PRIVATE_KEY'),
  chainId: Number(env('CHAIN_ID')),
  escrow: env('ESCROW'),
  model: env('MODEL'),
  streams: Number(env('STREAMS', '8')),
  maxDeposit: env('MAX_DEPOSIT', '1'),
  timeoutMs: Number(env('TIMEOUT_MS', '120000')),
};
guardNetwork([cfg.url, cfg.rpcUrl]);

const account = privateKeyToAccount(cfg.privateKey);
const chain = { ...tempoModerato, id: cfg.chainId, rpcUrls: { default: { http: [cfg.rpcUrl] } } };
const client = createClient({ account, chain, transport: gasBumpingHttp(cfg.rpcUrl, 400000n), pollingInterval: 100 });

// Records every voucher POST's answer.
const voucherStatuses = [];
async function recordingFetch(input, init = {}) {
  const response = await globalThis.fetch(input, init);
  const authorization = new Headers(init.headers).get('authorization');
  const token = authorization && Credential.extractPaymentScheme(authorization);
  let action;
  try {
    action = token ? Credential.deserialize(token).payload?.action : undefined;
  } catch {}
  const bodiless = init.body === undefined || init.body === null;
  if (process.env.DEBUG) console.error(`${init.method ?? 'GET'} ${action ?? '-'} -> ${response.status} ${response.status === 402 && action ? await response.clone().text() : ''}`);
  if (action === 'voucher' && bodiless) {
    const text = response.ok ? '' : await response.clone().text();
    voucherStatuses.push({ status: response.status, ...(text && { body: text }) });
  }
  return response;
}

const manager = sessionLegacyManager({
  account,
  client,
  escrowContract: cfg.escrow,
  maxDeposit: cfg.maxDeposit,
  fetch: recordingFetch,
});

async function stream(index) {
  const body = JSON.stringify({
    model: cfg.model,
    messages: [{ role: 'user', content: `Stream number ${index}, please.` }],
    stream: true,
  });
  const receipts = [];
  const result = { kind: 'stream', index, messages: 0, done: false, usage: null, receipt: null, error: null };
  try {
    const messages = await manager.sse(cfg.url, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json' },
      onReceipt: (receipt) => receipts.push(receipt),
    });
    for await (const message of messages) {
      result.messages++;
      result.last = message.slice(0, 400);
      if (message.trim() === '[DONE]') result.done = true;
      else {
        try {
          const chunk = JSON.parse(message);
          if (chunk.usage) result.usage = chunk.usage;
          if (chunk.error) result.error = chunk.error;
        } catch {}
      }
    }
  } catch (e) {
    result.error = e?.message ?? String(e);
  }
  result.receipt = receipts.at(-1) ?? null;
  if (result.done) delete result.last; // kept only to tell why a stream ended early
  out(result);
  return result;
}

async function main() {
  // The first stream opens the channel (concurrent first requests would open several).
  const first = await stream(0);
  if (!first.done || first.error) fail(`the opening stream failed: ${JSON.stringify(first)}`);
  const results = await Promise.all(Array.from({ length: cfg.streams }, (_, i) => stream(i + 1)));
  out({ kind: 'vouchers', statuses: voucherStatuses });
  const closed = await manager.close();
  out({ kind: 'close', receipt: closed });
  out({ kind: 'done', channelId: manager.channelId, cumulative: manager.cumulative });
  const failed = results.filter((r) => !r.done || r.error || !r.receipt || !r.usage);
  if (failed.length) fail(`${failed.length} of ${cfg.streams} streams did not complete: ${JSON.stringify(failed)}`);
  if (!closed?.txHash) fail(`close returned no transaction: ${JSON.stringify(closed)}`);
}

const timer = setTimeout(() => fail(`timed out after ${cfg.timeoutMs} ms`), cfg.timeoutMs);
main().then(
  () => {
    clearTimeout(timer);
    process.exit(0);
  },
  (e) => fail(e?.stack ?? String(e)),
);
