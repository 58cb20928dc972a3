#!/usr/bin/env node
// Pays one request to a tollgate server with a REAL x402 client, used as its README shows it,
// and prints {status, body, paymentResponse} as one JSON line on stdout (paymentResponse: the
// PAYMENT-RESPONSE header for x402-fetch, X-PAYMENT-RESPONSE for libertai-openai).
//
// Env (required): CLIENT, URL (the paid endpoint), PRIVATE_KEY; ASSET (the token, opted in to the
// client's spend controls) for x402-fetch; RPC_URL for libertai-openai. MODEL: the chat's model
// (default test-model); the request caps its output at 16 tokens.
//   x402-fetch       @x402/fetch wrapFetchWithPaymentFromConfig + @x402/evm ExactEvmScheme on
//                    eip155:8453 (x402 v2, PAYMENT-SIGNATURE); POSTs a chat request.
//   libertai-openai  the openai SDK with apiKey "x402" and fetch: wrapFetchWithPayment(key) from
//                    @libertai/x402 0.1.0 (X-PAYMENT). The client hard-codes Base and reads
//                    `nonces` through viem's default Base RPC: globalThis.fetch is wrapped BEFORE
//                    the client loads so that host goes to RPC_URL (the local anvil); the client
//                    code is untouched.
// Exit 0 when the request was made (whatever its status); 1 with "x402_pay: FAILED: ..." else.

const fail = (message) => {
  process.stderr.write(`x402_pay: FAILED: ${message}\n`);
  process.exit(1);
};
const need = (name) => process.env[name] ?? fail(`${name} is not set`);
const chat = { model: process.env.MODEL ?? 'test-model', messages: [{ role: 'user', content: 'Hello!' }], max_tokens: 16 };

async function x402Fetch(url, key, asset) {
  const { wrapFetchWithPaymentFromConfig } = await import('@x402/fetch');
  const { ExactEvmScheme } = await import('@x402/evm');
  const { privateKeyToAccount } = await import('viem/accounts');
  const account = privateKeyToAccount(key);
  const fetchWithPayment = wrapFetchWithPaymentFromConfig(fetch, {
    schemes: [{ network: 'eip155:8453', client: new ExactEvmScheme(account) }],
    // The test token is no default asset: opt it in, as the client's docs say to.
    spendControls: { allowedAssets: [{ network: 'eip155:8453', asset }] },
  });
  const response = await fetchWithPayment(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(chat),
  });
  return {
    status: response.status,
    body: await response.text(),
    paymentResponse: response.headers.get('payment-response'),
  };
}

async function libertaiOpenai(url, key, rpc) {
  const realFetch = globalThis.fetch;
  globalThis.fetch = async (input, init) => {
    const request = new Request(input, init);
    if (new URL(request.url).host !== 'mainnet.base.org') return realFetch(request);
    const body = await request.arrayBuffer();
    return realFetch(rpc, { method: request.method, headers: request.headers, body });
  };
  const { wrapFetchWithPayment } = await import('@libertai/x402');
  const { default: OpenAI } = await import('openai');
  const client = new OpenAI({
    baseURL: url.replace(/\/chat\/completions$/, ''),
    apiKey: 'x402',
    fetch: wrapFetchWithPayment(key),
    maxRetries: 0,
  });
  try {
    // The SDK's documented access to the raw response: its headers carry the receipt.
    const { data, response } = await client.chat.completions.create(chat).withResponse();
    return { status: 200, body: JSON.stringify(data), paymentResponse: response.headers.get('x-payment-response') };
  } catch (e) {
    if (typeof e?.status === 'number') return { status: e.status, body: String(e.message), paymentResponse: null };
    throw e;
  }
}

async function main() {
  const [client, url, key] = [need('CLIENT'), need('URL'), need('PRIVATE_KEY')];
  let out;
  switch (client) {
    case 'x402-fetch':
      out = await x402Fetch(url, key, need('ASSET'));
      break;
    case 'libertai-openai':
      out = await libertaiOpenai(url, key, need('RPC_URL'));
      break;
    default:
      fail(`unknown CLIENT ${client}`);
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

main().catch((e) => fail(e?.stack ?? String(e)));
