#!/usr/bin/env node
// mppx 0.11's v1 plain client (`sessionLegacy` + its plain fetch), which cannot answer the
// proxy's in-band `payment-need-voucher` events (only `sessionLegacyManager().sse()` does),
// asks for one streamed completion. It prints what it got: status, the SSE events, whether
// any content arrived, and how long the whole request took (milliseconds, informational).
//
// stdout: one JSON line {"kind":"result", status, events, content, ms}. Exit 0 unless the
// client itself failed ("v1_plain_client: FAILED: <reason>" on stderr).
// Env (required): BASE_URL (the proxy's .../v1), RPC_URL, PRIVATE_KEY, CHAIN_ID, ESCROW, MODEL.
import { gasBumpingHttp, guardNetwork } from './lib/local_chain.mjs';
import { Mppx, sessionLegacy } from 'mppx/client';
import { createClient } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { tempoModerato } from 'viem/tempo/chains';

const fail = (message) => {
  console.error(`v1_plain_client: FAILED: ${message}`);
  process.exit(1);
};
const env = (name) => process.env[name] || fail(`missing environment variable ${name}`);
const [baseUrl, rpcUrl] = [env('BASE_URL'), env('RPC_URL')];
guardNetwork([baseUrl, rpcUrl]);

const account = privateKeyToAccount(env('PRIVATE_KEY'));
const chain = { ...tempoModerato, id: Number(env('CHAIN_ID')), rpcUrls: { default: { http: [rpcUrl] } } };
const client = createClient({ account, chain, transport: gasBumpingHttp(rpcUrl, 400000n), pollingInterval: 100 });
const mppx = Mppx.create({
  methods: [sessionLegacy({ account, escrowContract: env('ESCROW'), maxDeposit: '1', getClient: () => client })],
  polyfill: false,
});

async function main() {
  const started = Date.now();
  const res = await mppx.fetch(`${baseUrl}/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: env('MODEL'), messages: [{ role: 'user', content: 'hello' }], stream: true }),
  });
  const text = await res.text();
  const events = [];
  let content = '';
  for (const block of text.split('\n\n')) {
    let event = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event: ')) event = line.slice(7);
      else if (line.startsWith('data: ')) data.push(line.slice(6));
    }
    if (!data.length) continue;
    const joined = data.join('\n');
    events.push({ event, data: joined });
    if (event === 'message' && joined !== '[DONE]') {
      try {
        content += JSON.parse(joined).choices?.[0]?.delta?.content ?? '';
      } catch {}
    }
  }
  process.stdout.write(`${JSON.stringify({ kind: 'result', status: res.status, events, content, ms: Date.now() - started })}\n`);
}

main().then(
  () => process.exit(0),
  (e) => fail(e?.stack ?? String(e)),
);
