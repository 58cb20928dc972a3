#!/usr/bin/env node
// A small local x402 facilitator built from the official code: @x402/core 2.27.0's
// x402Facilitator with @x402/evm 2.27.0's exact and upto EVM facilitator schemes, settling on a local
// anvil with the given key. Routes (JSON): POST /verify and POST /settle with
// {x402Version, paymentPayload, paymentRequirements}; GET /supported.
//
// Usage: node tests/js/x402_facilitator.mjs <port>   (listens on 127.0.0.1; port 0 = any)
// Env (required): RPC_URL, PRIVATE_KEY (the facilitator's gas payer), CHAIN_ID.
// Prints one line {"kind":"listening","port":N} on stdout once it accepts connections, then
// one line per request {"kind":"request", path, status}. Runs until killed.
import { createServer } from 'node:http';
import { x402Facilitator } from '@x402/core/facilitator';
import { toFacilitatorEvmSigner } from '@x402/evm';
import { ExactEvmScheme } from '@x402/evm/exact/facilitator';
import { UptoEvmScheme } from '@x402/evm/upto/facilitator';
import { createWalletClient, http, publicActions } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { guardNetwork } from './lib/local_chain.mjs';

const fail = (message) => {
  process.stderr.write(`x402_facilitator: FAILED: ${message}\n`);
  process.exit(1);
};
const need = (name) => process.env[name] ?? fail(`${name} is not set`);
const out = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

const rpcUrl = need('RPC_URL');
guardNetwork([rpcUrl]);
const chainId = Number(need('CHAIN_ID'));
const account = privateKeyToAccount(need('PRIVATE_KEY'));
const chain = {
  id: chainId,
  name: 'local',
  nativeCurrency: { name: 'Ether', symbol: 'ETH', decimals: 18 },
  rpcUrls: { default: { http: [rpcUrl] } },
};
const client = createWalletClient({ account, chain, transport: http(rpcUrl) }).extend(publicActions);
const signer = toFacilitatorEvmSigner({
  address: account.address,
  readContract: (args) => client.readContract(args),
  verifyTypedData: (args) => client.verifyTypedData(args),
  writeContract: (args) => client.writeContract(args),
  sendTransaction: (args) => client.sendTransaction(args),
  waitForTransactionReceipt: (args) => client.waitForTransactionReceipt(args),
  getCode: (args) => client.getCode(args),
});
const facilitator = new x402Facilitator()
  .register(`eip155:${chainId}`, new ExactEvmScheme(signer))
  .register(`eip155:${chainId}`, new UptoEvmScheme(signer));

const json = (value) => JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));

async function handle(req) {
  if (req.method === 'GET' && req.url === '/supported') return [200, facilitator.getSupported()];
  if (req.method !== 'POST' || (req.url !== '/verify' && req.url !== '/settle')) return [404, { error: 'not found' }];
  let body = '';
  for await (const chunk of req) body += chunk;
  const { paymentPayload, paymentRequirements } = JSON.parse(body);
  const answer =
    req.url === '/verify'
      ? await facilitator.verify(paymentPayload, paymentRequirements)
      : await facilitator.settle(paymentPayload, paymentRequirements);
  return [200, answer];
}

const server = createServer(async (req, res) => {
  let status = 500;
  let answer;
  try {
    [status, answer] = await handle(req);
  } catch (e) {
    answer = { error: String(e?.message ?? e) };
  }
  out({ kind: 'request', path: req.url, status, answer });
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(json(answer));
});
server.listen(Number(process.argv[2] ?? 0), '127.0.0.1', () => out({ kind: 'listening', port: server.address().port }));
