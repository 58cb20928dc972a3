#!/usr/bin/env node
// mppx 0.11's charge client, as its docs show it: `Mppx.create({ methods: [tempo.charge(...)] })`
// and then the plain global fetch, which Mppx.create wraps. Each request: unpaid → 402 →
// mppx picks the `tempo/charge` challenge (ignoring any other offer of the route), signs one
// TIP-20 transfer (pull mode: the server broadcasts it) → the paid response.
// `getClient` only because this is a local chain (mppx knows the public Tempo RPCs only).
//
// stdout: JSON lines {"kind":"response", status, receipt, body} per request, then {"kind":"done"}.
// Exit 0 on success; 1 with "mppx_charge_client: FAILED: <reason>" on stderr.
// Env (required): URL, RPC_URL, PRIVATE_KEY, CHAIN_ID. Optional: REQUESTS (default 1),
// REQUEST_METHOD (default GET), REQUEST_BODY (sent as application/json), TIMEOUT_MS (default 60000).
import { gasBumpingHttp, guardNetwork } from './lib/local_chain.mjs';
import { Mppx, tempo } from 'mppx/client';
import { Receipt } from 'mppx';
import { createClient } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { tempoModerato } from 'viem/tempo/chains';

const out = (obj) => process.stdout.write(`${JSON.stringify(obj, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
const fail = (message) => {
  console.error(`mppx_charge_client: FAILED: ${message}`);
  process.exit(1);
};
const env = (name, fallback) => process.env[name] || fallback || fail(`missing environment variable ${name}`);

const cfg = {
  url: env('URL'),
  rpcUrl: env('RPC_URL'),
  privateKey: env('PRIVATE_KEY'),
  chainId: Number(env('CHAIN_ID')),
  requests: Number(env('REQUESTS', '1')),
  method: env('REQUEST_METHOD', 'GET'),
  body: process.env.REQUEST_BODY,
  timeoutMs: Number(env('TIMEOUT_MS', '60000')),
};
setTimeout(() => fail(`timed out after ${cfg.timeoutMs} ms`), cfg.timeoutMs).unref();
guardNetwork([cfg.url, cfg.rpcUrl]);

const account = privateKeyToAccount(cfg.privateKey);
const chain = { ...tempoModerato, id: cfg.chainId, rpcUrls: { default: { http: [cfg.rpcUrl] } } };
const client = createClient({ account, chain, transport: gasBumpingHttp(cfg.rpcUrl, 400000n), pollingInterval: 100 });

Mppx.create({ methods: [tempo.charge({ account, getClient: () => client })] });

try {
  for (let i = 0; i < cfg.requests; i++) {
    const init = cfg.body
      ? { method: cfg.method, body: cfg.body, headers: { 'content-type': 'application/json' } }
      : { method: cfg.method };
    const res = await fetch(cfg.url, init);
    const header = res.headers.get('payment-receipt');
    const receipt = header ? Receipt.deserialize(header) : null;
    const body = await res.text();
    out({ kind: 'response', status: res.status, receipt, paid: res.headers.get('x-paid'), paidWith: res.headers.get('x-paid-with'), body });
    if (res.status !== 200) fail(`request ${i} answered ${res.status}: ${body}`);
  }
  out({ kind: 'done' });
  process.exit(0);
} catch (error) {
  fail(error?.stack || String(error));
}
