#!/usr/bin/env node
// The REAL x402 `upto` client (@x402/fetch wrapFetchWithPaymentFromConfig + @x402/evm 2.27.0
// UptoEvmScheme, Permit2 + x402UptoPermit2Proxy) used as its README shows it, against a tollgate
// server; or its signing half alone. Prints one JSON line on stdout.
//
// Env (required): MODE, PRIVATE_KEY; URL and ASSET (opted in to the client's spend controls) for
// pay / disconnect; REQUIREMENT (a requirement JSON) for sign. Optional: MODEL (default test-model),
// MAX_TOKENS (the chat's output cap; none by default).
//   pay         POSTs a chat request, reads the whole answer: {status, body, paymentResponse}.
//   disconnect  POSTs it, reads until the first complete SSE event (a blank line), then aborts
//               the request: {status, received} (the text it read).
//   sign        UptoEvmScheme.createPaymentPayload(2, REQUIREMENT): {x402Version, payload}.
// Exit 0 when done (whatever the status); 1 with "x402_upto: FAILED: ..." else.
import { wrapFetchWithPaymentFromConfig } from '@x402/fetch';
import { UptoEvmScheme } from '@x402/evm/upto/client';
import { privateKeyToAccount } from 'viem/accounts';
import { guardNetwork } from './lib/local_chain.mjs';

const fail = (message) => {
  process.stderr.write(`x402_upto: FAILED: ${message}\n`);
  process.exit(1);
};
const need = (name) => process.env[name] ?? fail(`${name} is not set`);
const chat = { model: process.env.MODEL ?? 'test-model', messages: [{ role: 'user', content: 'Hello!' }], stream: true };
if (process.env.MAX_TOKENS) chat.max_tokens = Number(process.env.MAX_TOKENS);

function paying(account, asset) {
  return wrapFetchWithPaymentFromConfig(fetch, {
    schemes: [{ network: 'eip155:8453', client: new UptoEvmScheme(account) }],
    // The test token is no default asset: opt it in, as the client's docs say to.
    spendControls: { allowedAssets: [{ network: 'eip155:8453', asset }] },
  });
}

async function main() {
  const mode = need('MODE');
  const account = privateKeyToAccount(need('PRIVATE_KEY'));
  if (mode === 'sign') {
    const signed = await new UptoEvmScheme(account).createPaymentPayload(2, JSON.parse(need('REQUIREMENT')));
    return signed;
  }
  const url = need('URL');
  guardNetwork([url]);
  const fetchWithPayment = paying(account, need('ASSET'));
  const abort = new AbortController();
  const response = await fetchWithPayment(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(chat),
    signal: abort.signal,
  });
  if (mode === 'pay') {
    return {
      status: response.status,
      body: await response.text(),
      paymentResponse: response.headers.get('payment-response'),
    };
  }
  if (mode !== 'disconnect') fail(`unknown MODE ${mode}`);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let received = '';
  while (!received.includes('\n\n')) {
    const { value, done } = await reader.read();
    if (done) break;
    received += decoder.decode(value, { stream: true });
  }
  abort.abort();
  return { status: response.status, received };
}

main()
  .then((out) => process.stdout.write(`${JSON.stringify(out)}\n`))
  .catch((e) => fail(e?.stack ?? String(e)));
