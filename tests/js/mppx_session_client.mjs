#!/usr/bin/env node
// MPP "v1" (escrow-contract) session client harness, driven by the real mppx 0.11 `sessionLegacy` client.
//
// Flow: one paid SSE request (the client opens a channel, the server pauses the stream with
// `payment-need-voucher` events and the client answers each with a voucher on a bodiless POST),
// then a top-up of the channel, then a cooperative close. Every step is checked on chain.
//
// stdout: one JSON object per line.
//   {"kind":"config", ...}                                         what the harness will do
//   {"kind":"http","method","url","status","action",...}           every HTTP exchange (action = credential action)
//   {"kind":"event","event":"message"|"payment-need-voucher"|"payment-receipt"|<other>,"data":...,"valid":bool}
//                                                                   every SSE event, as received
//   {"kind":"topUp", ...}  {"kind":"close", ...}                    management results (receipt + on-chain check)
//   {"kind":"done", channelId, amounts, tx hashes, ...}            final summary (only on success)
// stderr: diagnostics; on failure a line starting with "mppx_session_client: FAILED:".
// Exit code: 0 on success, 1 on any failure (including a timeout).
//
// Environment (required): URL, RPC_URL, PRIVATE_KEY, CHAIN_ID
//   URL            paid SSE endpoint, e.g. http://127.0.0.1:PORT/v1/stream (no query string: a query
//                  string turns voucher POSTs into billable content requests on mppx servers)
//   RPC_URL        JSON-RPC of the chain (anvil --network tempo), 127.0.0.1 only in tests
//   PRIVATE_KEY    payer key (0x...). Use a payer that has not sent an expiring-nonce tx on this anvil yet (quirk 2).
//   CHAIN_ID       chain id; must equal the challenge's methodDetails.chainId and the RPC's eth_chainId
// Environment (optional):
//   ESCROW              escrow the client trusts (default: mppx's default for CHAIN_ID, e.g. 42431 ->
//                       0xe1c4d3dce17bc111181ddf716f75bae49e61a336); must equal methodDetails.escrowContract
//   MAX_DEPOSIT         mppx `maxDeposit`, in whole tokens (6 decimals), default "1". The open deposit is
//                       min(suggestedDeposit, MAX_DEPOSIT); vouchers above it are refused locally.
//   TOPUP_AMOUNT_RAW    additional deposit in base units (default 250000); "0" skips the top-up
//   TOPUP_NONCE         "sequential" (default; needed on anvil, see quirk 2) or "expiring"
//   CLOSE               "1" (default) closes the channel at the end; "0" leaves it open
//   REQUESTS            how many paid streaming requests on the one channel before the top-up (default 1)
//   REQUEST_METHOD      method of the streaming request, default GET
//   REQUEST_BODY        optional body of the streaming request (sent with content-type: application/json)
//   MIN_NEED_VOUCHER    fail unless at least this many payment-need-voucher events arrive (default 1)
//   EXPECT_MESSAGES     fail unless exactly this many message events arrive (default: any >= 1)
//   GAS_LIMIT           minimum gas for client-built Tempo transactions (default 400000, quirk 1)
//   TIMEOUT_MS          overall deadline (default 120000)
//   WIRE_LOG            file to append a raw capture of every request/response (JSON lines)
import { appendFileSync } from 'node:fs';
import { Challenge, Credential } from 'mppx';
import { sessionLegacy, sessionLegacyManager } from 'mppx/client';
import { gasBumpingHttp, guardNetwork } from './lib/local_chain.mjs';
import { SessionLegacy } from 'mppx/tempo';
import { createClient, encodeFunctionData, http, isAddressEqual, keccak256, parseAbi, toHex } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import {
  getLogs,
  getTransactionReceipt,
  prepareTransactionRequest,
  readContract,
  signTransaction,
  waitForTransactionReceipt,
} from 'viem/actions';
import { tempoModerato } from 'viem/tempo/chains';

const escrowAbi = SessionLegacy.Session.Chain.escrowAbi;
const tip20Abi = parseAbi(['function approve(address spender, uint256 amount) returns (bool)']);
const DEFAULT_ESCROW = {
  4217: '0x33b901018174DDabE4841042ab76ba85D4e24f25',
  42431: '0xe1c4d3dce17bc111181ddf716f75bae49e61a336',
};

const out = (obj) => process.stdout.write(`${JSON.stringify(obj, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
class HarnessError extends Error {}
const fail = (msg) => {
  throw new HarnessError(msg);
};

function env(name, fallback) {
  const v = process.env[name];
  if (v === undefined || v === '') {
    if (fallback === undefined) fail(`missing required environment variable ${name}`);
    return fallback;
  }
  return v;
}

// ---------------------------------------------------------------- configuration

const cfg = (() => {
  try {
    const chainId = Number(env('CHAIN_ID'));
    if (!Number.isSafeInteger(chainId) || chainId <= 0) fail(`CHAIN_ID must be a positive integer`);
    const escrow = env('ESCROW', DEFAULT_ESCROW[chainId] ?? '');
    if (!escrow) fail(`ESCROW is required for chain ${chainId} (mppx has no default escrow for it)`);
    const url = new URL(env('URL'));
    if (url.search) console.error('mppx_session_client: warning: URL has a query string; mppx servers bill voucher POSTs to it as content');
    return {
      url: url.toString(),
      rpcUrl: env('RPC_URL'),
      privateKey: env('PRIVATE_KEY'),
      chainId,
      escrow,
      maxDeposit: env('MAX_DEPOSIT', '1'),
      topUpAmount: BigInt(env('TOPUP_AMOUNT_RAW', '250000')),
      topUpNonce: env('TOPUP_NONCE', 'sequential'),
      close: env('CLOSE', '1') !== '0',
      requests: Number(env('REQUESTS', '1')),
      requestMethod: env('REQUEST_METHOD', 'GET').toUpperCase(),
      requestBody: process.env.REQUEST_BODY || undefined,
      minNeedVoucher: Number(env('MIN_NEED_VOUCHER', '1')),
      expectMessages: process.env.EXPECT_MESSAGES ? Number(process.env.EXPECT_MESSAGES) : undefined,
      gasLimit: BigInt(env('GAS_LIMIT', '400000')),
      timeoutMs: Number(env('TIMEOUT_MS', '120000')),
      wireLog: process.env.WIRE_LOG || undefined,
    };
  } catch (e) {
    console.error(`mppx_session_client: FAILED: ${e.message}`);
    process.exit(1);
  }
})();

// ---------------------------------------------------------------- network guard

// Only the resource server and the RPC may be contacted. mppx/viem fall back to public Tempo RPCs
// when a client is mis-wired; in tests that must fail loudly instead of leaving the machine.
guardNetwork([cfg.url, cfg.rpcUrl]);

// ---------------------------------------------------------------- chain client (anvil workaround 1)


const account = privateKeyToAccount(cfg.privateKey);
const chain = { ...tempoModerato, id: cfg.chainId, rpcUrls: { default: { http: [cfg.rpcUrl] } } };
const client = createClient({ account, chain, transport: gasBumpingHttp(cfg.rpcUrl, cfg.gasLimit), pollingInterval: 100 });

// ---------------------------------------------------------------- HTTP wire observer

const wire = {
  challenge: null, // last tempo/session challenge seen in a 402
  sse: { messages: [], needVoucher: [], receipts: [], invalid: [] },
  exchanges: [],
};

function wireLog(record) {
  if (cfg.wireLog) appendFileSync(cfg.wireLog, `${JSON.stringify({ t: Date.now(), ...record })}\n`);
}

function decodeCredential(authorization) {
  if (!authorization) return undefined;
  const token = Credential.extractPaymentScheme(authorization);
  if (!token) return undefined;
  try {
    return Credential.deserialize(token);
  } catch {
    return undefined;
  }
}

function decodeReceipt(header) {
  if (!header) return undefined;
  try {
    return JSON.parse(Buffer.from(header, 'base64url').toString('utf8'));
  } catch {
    return { undecodable: header };
  }
}

// Same predicates as the mppx 0.11 client: events that fail them are silently ignored by mppx.
const isStr = (v) => typeof v === 'string';
const validNeedVoucher = (d) =>
  !!d && isStr(d.channelId) && isStr(d.requiredCumulative) && isStr(d.acceptedCumulative) && isStr(d.deposit);
const validReceipt = (d) =>
  !!d &&
  d.method === 'tempo' &&
  d.intent === 'session' &&
  d.status === 'success' &&
  [d.timestamp, d.reference, d.challengeId, d.channelId, d.acceptedCumulative, d.spent].every(isStr) &&
  (d.units === undefined || typeof d.units === 'number') &&
  (d.txHash === undefined || isStr(d.txHash));

function parseSseBlock(block) {
  let event = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith('event: ')) event = line.slice(7).trim();
    else if (line.startsWith('data: ')) data.push(line.slice(6));
    else if (line === 'data:') data.push('');
  }
  if (data.length === 0) return null;
  return { event, data: data.join('\n') };
}

function onSseEvent(block) {
  const ev = parseSseBlock(block);
  if (!ev) {
    out({ kind: 'event', event: null, raw: block, valid: false, note: 'no data: line; ignored by mppx clients' });
    return;
  }
  if (ev.event === 'payment-need-voucher' || ev.event === 'payment-receipt') {
    let data;
    try {
      data = JSON.parse(ev.data);
    } catch {
      data = undefined;
    }
    const valid = ev.event === 'payment-need-voucher' ? validNeedVoucher(data) : validReceipt(data);
    out({ kind: 'event', event: ev.event, data: data ?? ev.data, valid });
    if (!valid) wire.sse.invalid.push(ev);
    else if (ev.event === 'payment-need-voucher') wire.sse.needVoucher.push(data);
    else wire.sse.receipts.push(data);
    return;
  }
  // mppx treats unknown event names as `message`.
  out({ kind: 'event', event: ev.event, data: ev.data, valid: true });
  wire.sse.messages.push(ev.data);
}

// Observes the SSE body as the mppx client reads it (prints each event before mppx acts on it).
function observeSse(body, record) {
  const decoder = new TextDecoder();
  let buffer = '';
  return body.pipeThrough(
    new TransformStream({
      transform(chunk, controller) {
        const text = decoder.decode(chunk, { stream: true });
        record.sseChunks.push(text);
        wireLog({ dir: 'sse-chunk', id: record.id, text });
        buffer += text.replace(/\r\n/g, '\n');
        const parts = buffer.split('\n\n');
        buffer = parts.pop();
        for (const p of parts) if (p.trim()) onSseEvent(p);
        controller.enqueue(chunk);
      },
      flush() {
        if (buffer.trim()) {
          console.error(`mppx_session_client: SSE stream ended inside an unterminated event: ${JSON.stringify(buffer)}`);
          wire.sse.invalid.push({ event: 'unterminated', data: buffer });
        }
      },
    }),
  );
}

let exchangeId = 0;
async function observingFetch(input, init = {}) {
  const id = ++exchangeId;
  const method = (init.method ?? (input instanceof Request ? input.method : 'GET')).toUpperCase();
  const url = input instanceof Request ? input.url : String(input);
  const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined));
  const credential = decodeCredential(headers.get('authorization'));
  const hasBody = init.body !== undefined && init.body !== null;
  wireLog({
    dir: 'request',
    id,
    method,
    url,
    headers: Object.fromEntries(headers),
    body: typeof init.body === 'string' ? init.body : hasBody ? '<stream>' : null,
    credential,
  });

  const res = await fetch(input, init);
  const resHeaders = Object.fromEntries(res.headers);
  const record = { id, method, url, status: res.status, action: credential?.payload?.action, sseChunks: [] };
  wire.exchanges.push(record);

  if (res.status === 402) {
    try {
      const list = Challenge.fromResponseList(res);
      wire.challenge = list.find((c) => c.method === 'tempo' && c.intent === 'session') ?? wire.challenge;
    } catch (e) {
      console.error(`mppx_session_client: could not parse the 402 challenge: ${e.message}`);
    }
  }
  const receipt = decodeReceipt(res.headers.get('payment-receipt'));
  const summary = {
    kind: 'http',
    method,
    url,
    status: res.status,
    ...(credential && { action: credential.payload?.action }),
    ...(credential?.payload?.cumulativeAmount !== undefined && { cumulativeAmount: credential.payload.cumulativeAmount }),
    ...(credential?.payload?.additionalDeposit !== undefined && { additionalDeposit: credential.payload.additionalDeposit }),
    ...(receipt && { receipt }),
    contentType: res.headers.get('content-type'),
  };
  out(summary);

  const isSse = (res.headers.get('content-type') ?? '').toLowerCase().startsWith('text/event-stream');
  if (isSse && res.body) {
    wireLog({ dir: 'response', id, status: res.status, statusText: res.statusText, headers: resHeaders, body: '<sse, see sse-chunk records>' });
    return new Response(observeSse(res.body, record), { status: res.status, statusText: res.statusText, headers: res.headers });
  }
  const bodyText = await res.clone().text();
  wireLog({ dir: 'response', id, status: res.status, statusText: res.statusText, headers: resHeaders, body: bodyText, receipt });
  if (!res.ok && res.status !== 402) console.error(`mppx_session_client: ${method} ${url} -> ${res.status} ${bodyText}`);
  return res;
}

// ---------------------------------------------------------------- on-chain helpers

const getChannel = (channelId) =>
  readContract(client, { address: cfg.escrow, abi: escrowAbi, functionName: 'getChannel', args: [channelId] });

async function findOpenTx(channelId) {
  const logs = await getLogs(client, {
    address: cfg.escrow,
    event: escrowAbi.find((x) => x.type === 'event' && x.name === 'ChannelOpened'),
    args: { channelId },
    fromBlock: 0n,
    toBlock: 'latest',
  });
  return logs[0]?.transactionHash;
}

// Sends a credential on a bodiless POST to the resource (how mppx sends management actions).
// On a 402 it retries once with the fresh challenge from that 402.
async function postManagement(makeCredential, label) {
  let challenge = wire.challenge;
  for (let attempt = 0; attempt < 2; attempt++) {
    const credential = await makeCredential(challenge);
    const res = await observingFetch(cfg.url, { method: 'POST', headers: { Authorization: credential } });
    if (res.ok) return res;
    const body = await res.text().catch(() => '');
    if (res.status === 402 && attempt === 0 && wire.challenge && wire.challenge !== challenge) {
      console.error(`mppx_session_client: ${label} got 402, retrying with the fresh challenge: ${body}`);
      challenge = wire.challenge;
      continue;
    }
    fail(`${label} POST answered ${res.status}: ${body}`);
  }
  fail(`${label} POST kept answering 402`);
}

// ---------------------------------------------------------------- the flow

async function main() {
  const rpcChainId = await client.request({ method: 'eth_chainId' });
  if (Number(rpcChainId) !== cfg.chainId) fail(`RPC chain id ${Number(rpcChainId)} != CHAIN_ID ${cfg.chainId}`);
  out({
    kind: 'config',
    url: cfg.url,
    chainId: cfg.chainId,
    escrow: cfg.escrow,
    payer: account.address,
    maxDeposit: cfg.maxDeposit,
    topUpAmount: cfg.topUpAmount,
    close: cfg.close,
  });

  const receiptsFromManager = [];
  // mppx 0.11 legacy (v1, escrow contract) session manager: opens the channel on the first 402,
  // streams SSE, answers payment-need-voucher with vouchers (bodiless POST), and closes.
  const manager = sessionLegacyManager({
    account,
    client,
    escrowContract: cfg.escrow,
    maxDeposit: cfg.maxDeposit,
    fetch: observingFetch,
  });

  // 1. Paid streaming requests on one channel (the first one opens it).
  let yielded = 0;
  for (let i = 0; i < cfg.requests; i++) {
    const abort = new AbortController();
    const init = {
      method: cfg.requestMethod,
      signal: abort.signal,
      onReceipt: (r) => receiptsFromManager.push(r),
      ...(cfg.requestBody !== undefined && {
        body: cfg.requestBody,
        headers: { 'content-type': 'application/json' },
      }),
    };
    const seen = wire.exchanges.length;
    const stream = await manager.sse(cfg.url, init);
    const streamResponse = wire.exchanges.slice(seen).find((x) => x.status !== 402);
    if (!streamResponse || streamResponse.status !== 200) fail(`paid streaming request answered ${streamResponse?.status}`);
    for await (const _chunk of stream) yielded++;
  }

  const channelId = manager.channelId;
  if (!channelId) fail('the client did not open a channel');
  if (wire.sse.invalid.length) fail(`server sent ${wire.sse.invalid.length} malformed payment event(s): ${JSON.stringify(wire.sse.invalid)}`);
  if (yielded === 0) fail('the stream delivered no message events');
  if (cfg.expectMessages !== undefined && yielded !== cfg.expectMessages)
    fail(`expected ${cfg.expectMessages} message events, got ${yielded}`);
  if (wire.sse.needVoucher.length < cfg.minNeedVoucher)
    fail(`expected at least ${cfg.minNeedVoucher} payment-need-voucher events, got ${wire.sse.needVoucher.length}`);
  const streamReceipt = wire.sse.receipts.at(-1);
  if (!streamReceipt) fail('the stream ended without a payment-receipt event');
  if (streamReceipt.channelId.toLowerCase() !== channelId.toLowerCase())
    fail(`payment-receipt is for channel ${streamReceipt.channelId}, expected ${channelId}`);
  const voucherPosts = wire.exchanges.filter((x) => x.action === 'voucher');
  const badVoucherPost = voucherPosts.find((x) => x.status < 200 || x.status > 299);
  if (badVoucherPost) fail(`a voucher POST answered ${badVoucherPost.status}`);
  if (voucherPosts.length < wire.sse.needVoucher.length)
    fail(`${wire.sse.needVoucher.length} need-voucher events but only ${voucherPosts.length} voucher POSTs`);

  const opened = await getChannel(channelId);
  if (!isAddressEqual(opened.payer, account.address)) fail(`on-chain payer ${opened.payer} != ${account.address}`);
  if (opened.finalized) fail('channel is already finalized after the stream');
  const openTxHash = await findOpenTx(channelId);
  const initialDeposit = opened.deposit;
  const currency = opened.token;

  // 2. Top-up. The mppx 0.11 legacy client can build the `topUp` credential but not the transaction,
  //    so the harness builds the Tempo transaction: [token.approve(escrow, amount), escrow.topUp(channelId, amount)].
  let topUp;
  if (cfg.topUpAmount > 0n) {
    // Note: the low-level method takes `getClient` (it ignores a `client` key and would fall back to
    // mppx's public RPC for the chain), unlike the manager, which maps `client` to `getClient`.
    const method = sessionLegacy({ account, getClient: () => client, escrowContract: cfg.escrow });
    const prepared = await prepareTransactionRequest(client, {
      account,
      calls: [
        { to: currency, data: encodeFunctionData({ abi: tip20Abi, functionName: 'approve', args: [cfg.escrow, cfg.topUpAmount] }) },
        { to: cfg.escrow, data: encodeFunctionData({ abi: escrowAbi, functionName: 'topUp', args: [channelId, cfg.topUpAmount] }) },
      ],
      feeToken: currency,
      // Anvil quirk 2: a second expiring-nonce (nonceKey 2^256-1) transaction from the same sender is
      // silently dropped, and the open already used one, so the top-up uses the sequential nonce.
      ...(cfg.topUpNonce === 'expiring' && { nonceKey: 'expiring', validBefore: Math.floor(Date.now() / 1000) + 25 }),
    });
    prepared.gas = (prepared.gas ?? 0n) + 5000n;
    const transaction = await signTransaction(client, prepared);
    const txHash = keccak256(transaction);
    const res = await postManagement(
      (challenge) =>
        method.createCredential({
          challenge,
          context: { action: 'topUp', channelId, transaction, additionalDepositRaw: cfg.topUpAmount.toString() },
        }),
      'topUp',
    );
    const receipt = decodeReceipt(res.headers.get('payment-receipt'));
    const mined = await waitForTransactionReceipt(client, { hash: txHash, timeout: 20_000 }).catch(() => undefined);
    if (!mined) fail(`topUp transaction ${txHash} was not mined`);
    if (mined.status !== 'success') fail(`topUp transaction ${txHash} reverted`);
    const after = await getChannel(channelId);
    if (after.deposit !== initialDeposit + cfg.topUpAmount)
      fail(`on-chain deposit ${after.deposit} != ${initialDeposit} + ${cfg.topUpAmount} after topUp`);
    topUp = { status: res.status, receipt, txHash, depositBefore: initialDeposit, depositAfter: after.deposit };
    out({ kind: 'topUp', ...topUp });
  }

  // 3. Cooperative close (manager.close(): voucher for max(spent, acceptedCumulative) on a bodiless POST).
  let close;
  if (cfg.close) {
    const before = await getChannel(channelId);
    const closeReceipt = await manager.close();
    const closeExchange = wire.exchanges.filter((x) => x.action === 'close').at(-1);
    if (!closeReceipt) fail(`close answered ${closeExchange?.status} without a Payment-Receipt header`);
    if (!closeReceipt.txHash) fail(`close receipt has no txHash: ${JSON.stringify(closeReceipt)}`);
    const mined = await getTransactionReceipt(client, { hash: closeReceipt.txHash }).catch(() => undefined);
    if (!mined || mined.status !== 'success') fail(`close transaction ${closeReceipt.txHash} not mined successfully`);
    const after = await getChannel(channelId);
    if (!after.finalized) fail('channel is not finalized on chain after close');
    // The server may capture less than the close voucher (never more): what was delivered,
    // or (v1) the highest voucher it holds at or below that.
    const expected = BigInt(closeReceipt.acceptedCumulative);
    if (after.settled > (expected > before.settled ? expected : before.settled))
      fail(`on-chain settled ${after.settled} is above the close amount ${expected}`);
    close = {
      status: closeExchange?.status,
      receipt: closeReceipt,
      txHash: closeReceipt.txHash,
      settled: after.settled,
      refunded: after.deposit - after.settled,
    };
    out({ kind: 'close', ...close });
  }

  const final = await getChannel(channelId);
  out({
    kind: 'done',
    channelId,
    payer: account.address,
    payee: final.payee,
    token: final.token,
    escrow: cfg.escrow,
    chainId: cfg.chainId,
    messages: yielded,
    needVoucherEvents: wire.sse.needVoucher.length,
    voucherPosts: voucherPosts.length,
    initialDeposit,
    topUpAmount: topUp ? cfg.topUpAmount : 0n,
    deposit: final.deposit,
    requests: cfg.requests,
    acceptedCumulative: streamReceipt.acceptedCumulative,
    spent: streamReceipt.spent,
    units: streamReceipt.units,
    cumulative: manager.cumulative,
    settled: final.settled,
    finalized: final.finalized,
    openTxHash,
    topUpTxHash: topUp?.txHash,
    closeTxHash: close?.txHash,
  });
}

const timer = setTimeout(() => {
  console.error(`mppx_session_client: FAILED: timed out after ${cfg.timeoutMs} ms`);
  process.exit(1);
}, cfg.timeoutMs);

main().then(
  () => {
    clearTimeout(timer);
    process.exit(0);
  },
  (e) => {
    clearTimeout(timer);
    const detail = e instanceof HarnessError ? e.message : e?.stack ?? String(e);
    console.error(`mppx_session_client: FAILED: ${detail}`);
    process.exit(1);
  },
);
