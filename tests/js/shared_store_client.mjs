#!/usr/bin/env node
// The Tempo guide's client (as guide_client.mjs: `Mppx.create({ methods: [tempo({ account,
// maxDeposit })] })` and the plain global `fetch`) paying several llm_proxy instances that
// share one store, behind the test's load balancer (BASE_URL). Unlike guide_client.mjs it
// survives a stream that breaks (an instance killed mid-stream): it reports what it received
// and goes on with the next completion.
//
// Flow: SEQUENTIAL streamed completions one after the other (the first opens the channel on
// chain), then CONCURRENT streamed completions at once on the same channel. The client never
// closes: the proxy closes an idle v2 channel itself.
//
// stdout: JSON lines {"kind":"completion","index","phase","text","usage","aborted","error",
// "needVoucher","channel"} and a final {"kind":"done","channels"}. Exit 0 when it ran to the end (a
// broken stream is reported, not a failure); 1 with "shared_store_client: FAILED: <reason>".
// Env (required): BASE_URL (…/v1), RPC_URL, PRIVATE_KEY, CHAIN_ID, MODEL. Optional: PROMPT,
// MAX_DEPOSIT (default "1"), SEQUENTIAL (default 1), CONCURRENT (default 0), TIMEOUT_MS
// (default 120000), PAUSE_FILE (before sequential completion i > 0, wait until the file
// `${PAUSE_FILE}.${i}` exists: the test's go-ahead).
import { existsSync } from 'node:fs';
import { gasBumpingHttp, guardNetwork } from './lib/local_chain.mjs';
import { Mppx, tempo } from 'mppx/client';
import { createClient } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { tempoModerato } from 'viem/tempo/chains';

const out = (obj) => process.stdout.write(`${JSON.stringify(obj, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
const fail = (message) => {
  console.error(`shared_store_client: FAILED: ${message}`);
  process.exit(1);
};
const env = (name, fallback) => process.env[name] || fallback || fail(`missing environment variable ${name}`);

const cfg = {
  baseUrl: env('BASE_URL'),
  rpcUrl: env('RPC_URL'),
  privateKey: env('PRIVATE_KEY'),
  chainId: Number(env('CHAIN_ID')),
  model: env('MODEL'),
  prompt: env('PROMPT', 'Say hello through two paid proxies.'),
  maxDeposit: env('MAX_DEPOSIT', '1'),
  sequential: Number(env('SEQUENTIAL', '1')),
  concurrent: Number(env('CONCURRENT', '0')),
  timeoutMs: Number(env('TIMEOUT_MS', '120000')),
  pauseFile: process.env.PAUSE_FILE,
};

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

// One streamed completion through the plain fetch, read as SSE; a broken stream is reported.
async function completion(index, phase) {
  const result = { kind: 'completion', index, phase, text: '', usage: null, aborted: false, error: null, needVoucher: 0 };
  try {
    const res = await fetch(`${cfg.baseUrl}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        model: cfg.model,
        messages: [{ role: 'user', content: `${cfg.prompt} (${phase} ${index})` }],
        stream: true,
        stream_options: { include_usage: true },
      }),
    });
    if (!res.ok) {
      result.error = `status ${res.status}: ${await res.text()}`;
      return result;
    }
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
        if (event === 'payment-need-voucher') result.needVoucher++;
        if (event !== 'message' || joined === '[DONE]') continue;
        const chunk = JSON.parse(joined);
        if (chunk.error) result.error = chunk.error;
        result.text += chunk.choices?.[0]?.delta?.content ?? '';
        if (chunk.usage) result.usage = chunk.usage;
      }
    }
  } catch (e) {
    result.aborted = true;
    result.error = e?.message ?? String(e);
  } finally {
    result.channel = [...channels].at(-1) ?? null;
    out(result);
  }
  return result;
}

async function main() {
  for (let i = 0; i < cfg.sequential; i++) {
    if (i > 0 && cfg.pauseFile) {
      while (!existsSync(`${cfg.pauseFile}.${i}`)) await new Promise((r) => setTimeout(r, 50));
    }
    await completion(i, 'sequential');
  }
  await Promise.all(Array.from({ length: cfg.concurrent }, (_, i) => completion(i, 'concurrent')));
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
