// Test-only: the mppx 0.11 default (v2, TIP-1034 channel reserve) session client pays one
// metered SSE stream and closes. Env: URL, RPC_URL, PRIVATE_KEY, CHAIN_ID, MAX_DEPOSIT
// (whole tokens, default 1), GAS_LIMIT (default 400000). Prints JSON lines:
// {"kind":"event",...} per SSE event and a final {"kind":"done",...}; exits 1 on failure.
import { sessionManager } from 'mppx/client';
import { createClient } from 'viem';
import { gasBumpingHttp, guardNetwork } from './lib/local_chain.mjs';
import { privateKeyToAccount } from 'viem/accounts';
import { tempoModerato } from 'viem/tempo/chains';

const need = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is required`);
  return v;
};
const fail = (why) => {
  console.error(`mppx_v2_client: FAILED: ${why}`);
  process.exit(1);
};
const url = need('URL');
const rpcUrl = need('RPC_URL');
const chainId = Number(need('CHAIN_ID'));
const minGas = BigInt(process.env.GAS_LIMIT ?? '400000');

// Only the server and the RPC may be contacted.
const realFetch = guardNetwork([url, rpcUrl]);


// Print every SSE event before the client acts on it.
function observingFetch(input, init) {
  return realFetch(input, init).then((response) => {
    const type = response.headers.get('content-type') ?? '';
    if (!type.startsWith('text/event-stream') || !response.body) return response;
    const [mine, theirs] = response.body.tee();
    (async () => {
      const reader = mine.pipeThrough(new TextDecoderStream()).getReader();
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
          if (data.length) console.log(JSON.stringify({ kind: 'event', event, data: data.join('\n') }));
        }
      }
    })().catch(() => {});
    return new Response(theirs, { status: response.status, statusText: response.statusText, headers: response.headers });
  });
}

try {
  const account = privateKeyToAccount(need('PRIVATE_KEY'));
  const chain = { ...tempoModerato, id: chainId, rpcUrls: { default: { http: [rpcUrl] } } };
  const client = createClient({ account, chain, transport: gasBumpingHttp(rpcUrl, minGas), pollingInterval: 100 });
  const manager = sessionManager({ account, client, maxDeposit: process.env.MAX_DEPOSIT ?? '1', fetch: observingFetch });
  const stream = await manager.sse(url, { method: 'GET' });
  let messages = 0;
  for await (const _ of stream) messages++;
  const channelId = manager.channelId;
  if (!channelId) fail('no channel was opened');
  const close = await manager.close();
  console.log(JSON.stringify({ kind: 'done', channelId, messages, cumulative: String(manager.cumulative ?? ''), close }));
  process.exit(0);
} catch (e) {
  fail(e?.stack ?? String(e));
}
