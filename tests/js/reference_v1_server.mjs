#!/usr/bin/env node
// Reference MPP "v1" session server: the real mppx 0.6.31 `tempo.session` server (npm alias
// `mppx-v1-server`, the last mppx release with a v1 escrow-contract session server), with SSE
// metering enabled. Used only to validate tests/js/mppx_session_client.mjs and to capture the exact
// wire format that tollgate's Rust server must reproduce.
//
// Routes (127.0.0.1 only):
//   GET|POST /v1/stream   paid SSE: CHUNKS message events, each metered at AMOUNT_RAW
//   GET      /healthz     200 "ok"
// On start it prints one line to stdout: {"kind":"listening","url":"http://127.0.0.1:<port>", ...}.
//
// Environment: RPC_URL (required), SERVER_PRIVATE_KEY (required; payee, sends close/settle txs),
//   CHAIN_ID (default 42431), ESCROW (default mppx's default for CHAIN_ID), PORT (default 0 = any),
//   CURRENCY (default pathUSD 0x20c0...0000), AMOUNT_RAW (per chunk, default 1000),
//   SUGGESTED_DEPOSIT_RAW (default 100000), CHUNKS (default 20), CHUNK_DELAY_MS (default 5),
//   UNIT_TYPE (default "chunk"), REALM (default "tollgate-reference"), GAS_LIMIT (default 400000),
//   WIRE_LOG (optional file: exact bytes of every request head and response head/body, JSON lines).
import { gasBumpingHttp } from './lib/local_chain.mjs';
import { setMaxListeners } from 'node:events';
import { appendFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { Mppx, Request as MppxRequest, tempo } from 'mppx-v1-server/server';
import { createClient, formatUnits, http, toHex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { tempoModerato } from 'viem/tempo/chains';

// mppx's SSE loop adds one abort listener per voucher wait to the request signal; silence the
// (harmless) MaxListenersExceededWarning for long streams.
setMaxListeners(1000);

const env = (name, fallback) => {
  const v = process.env[name];
  if (v === undefined || v === '') {
    if (fallback === undefined) {
      console.error(`reference_v1_server: missing required environment variable ${name}`);
      process.exit(1);
    }
    return fallback;
  }
  return v;
};

const rpcUrl = env('RPC_URL');
const chainId = Number(env('CHAIN_ID', '42431'));
const escrow = env('ESCROW', '0xe1c4d3dce17bc111181ddf716f75bae49e61a336');
const currency = env('CURRENCY', '0x20c0000000000000000000000000000000000000');
const amountRaw = BigInt(env('AMOUNT_RAW', '1000'));
const suggestedDepositRaw = BigInt(env('SUGGESTED_DEPOSIT_RAW', '100000'));
const chunks = Number(env('CHUNKS', '20'));
const chunkDelayMs = Number(env('CHUNK_DELAY_MS', '5'));
const unitType = env('UNIT_TYPE', 'chunk');
const realm = env('REALM', 'tollgate-reference');
const gasLimit = BigInt(env('GAS_LIMIT', '400000'));
const wireLogPath = process.env.WIRE_LOG || undefined;
const account = privateKeyToAccount(env('SERVER_PRIVATE_KEY'));


// Network guard: the only outbound host is the RPC (mppx/viem fall back to public Tempo RPCs when
// mis-wired; in tests that must fail instead of leaving the machine).
{
  const allowed = new URL(rpcUrl).host;
  const realFetch = globalThis.fetch;
  globalThis.fetch = (input, init) => {
    const host = new URL(input instanceof Request ? input.url : String(input)).host;
    if (host !== allowed) return Promise.reject(new Error(`network guard: refusing to contact ${host}`));
    return realFetch(input, init);
  };
}

const chain = { ...tempoModerato, id: chainId, rpcUrls: { default: { http: [rpcUrl] } } };
const client = createClient({ account, chain, transport: gasBumpingHttp(rpcUrl, gasLimit), pollingInterval: 100 });

const mppx = Mppx.create({
  realm,
  // Fixed (test-only) HMAC key so captures are reproducible; mppx requires >= 32 bytes.
  secretKey: 'tollgate-reference-v1-server-test-secret-key-0123456789',
  methods: [
    tempo.session({
      account,
      currency,
      escrowContract: escrow,
      chainId,
      getClient: () => client,
      sse: true,
    }),
  ],
});

const sessionRoute = mppx.session({
  amount: formatUnits(amountRaw, 6),
  suggestedDeposit: formatUnits(suggestedDepositRaw, 6),
  unitType,
});

async function* chunkStream() {
  for (let i = 1; i <= chunks; i++) {
    if (chunkDelayMs) await new Promise((r) => setTimeout(r, chunkDelayMs));
    yield `chunk ${i} of ${chunks}`;
  }
}

const handler = MppxRequest.toNodeListener(async (request) => {
  const url = new URL(request.url);
  if (url.pathname === '/healthz') return new Response('ok');
  if (url.pathname !== '/v1/stream') return new Response('not found', { status: 404 });
  const result = await sessionRoute(request);
  if (result.status === 402) return result.challenge;
  // A content request gets the metered SSE stream; management requests (bodiless POSTs with a
  // voucher/topUp/close credential) are answered 204 by mppx before this generator is used.
  return result.withReceipt(chunkStream());
});

// ---------------------------------------------------------------- wire capture (exact bytes)

let nextId = 0;
function wireLog(record) {
  if (wireLogPath) appendFileSync(wireLogPath, `${JSON.stringify({ t: Date.now(), ...record })}\n`);
}

const server = createServer((req, res) => {
  const id = ++nextId;
  if (wireLogPath) {
    wireLog({
      side: 'server',
      dir: 'request',
      id,
      head: `${req.method} ${req.url} HTTP/${req.httpVersion}\r\n${pairs(req.rawHeaders)}\r\n`,
    });
    let bodyBytes = 0;
    req.on('data', (c) => (bodyBytes += c.length));
    req.on('end', () => bodyBytes && wireLog({ side: 'server', dir: 'request-body', id, bytes: bodyBytes }));
    const write = res.write.bind(res);
    const end = res.end.bind(res);
    let headLogged = false;
    const logHead = () => {
      if (!headLogged && res.headersSent) {
        headLogged = true;
        wireLog({ side: 'server', dir: 'response', id, head: res._header });
      }
    };
    res.write = (chunk, ...rest) => {
      const r = write(chunk, ...rest);
      logHead();
      wireLog({ side: 'server', dir: 'response-chunk', id, text: Buffer.from(chunk).toString('utf8') });
      return r;
    };
    res.end = (chunk, ...rest) => {
      const r = end(chunk, ...rest);
      logHead();
      if (chunk && typeof chunk !== 'function') {
        wireLog({ side: 'server', dir: 'response-chunk', id, text: Buffer.from(chunk).toString('utf8') });
      }
      wireLog({ side: 'server', dir: 'response-end', id });
      return r;
    };
  }
  handler(req, res);
});

function pairs(raw) {
  let s = '';
  for (let i = 0; i < raw.length; i += 2) s += `${raw[i]}: ${raw[i + 1]}\r\n`;
  return s;
}

server.listen(Number(env('PORT', '0')), '127.0.0.1', () => {
  const { port } = server.address();
  process.stdout.write(
    `${JSON.stringify({ kind: 'listening', url: `http://127.0.0.1:${port}`, chainId, escrow, currency, payee: account.address, amountRaw: amountRaw.toString(), chunks })}\n`,
  );
});

const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
