#!/usr/bin/env node
// Signs one x402 payment with the REAL client libraries and prints the payment payload (one JSON
// line on stdout). No server is contacted: this is the signing half of the clients, so the Rust
// tests can feed their verifier exactly what the clients send.
//
// Env (required): REQUIREMENT (the requirement JSON the client chose), PRIVATE_KEY, CLIENT:
//   x402-v2        @x402/evm ExactEvmScheme (EIP-3009), x402Version 2; REQUIREMENT has `amount`
//                  and a CAIP-2 `network`. Prints {x402Version, payload}.
//   x402-v1        @x402/evm ExactEvmSchemeV1, x402Version 1; REQUIREMENT has `maxAmountRequired`
//                  and a v1 network name (e.g. `base`). Prints {x402Version, scheme, network, payload}.
//   libertai       @libertai/x402 0.1.0 createPaymentHeader, default EIP-3009 path (REQUIREMENT is
//                  a v1-style `accepts[0]`); prints the X-PAYMENT header value it would send (raw JSON).
//   libertai-permit  the same with `extra.primaryType: "Permit"` (EIP-2612); reads `nonces(owner)`
//                  from RPC_URL (required then).
// @libertai/x402 exports only wrapFetchWithPayment; its signer (dist/sign.js, what that wrapper
// calls) is loaded by file path, unchanged. It hard-codes chain id 8453 (Base).
// Exit 0 on success; 1 with "x402_sign: FAILED: <reason>" on stderr.
import { ExactEvmScheme } from '@x402/evm/exact/client';
import { ExactEvmSchemeV1 } from '@x402/evm/exact/v1/client';
import { createPublicClient, http } from 'viem';
import { privateKeyToAccount } from 'viem/accounts';
import { base } from 'viem/chains';

const fail = (message) => {
  process.stderr.write(`x402_sign: FAILED: ${message}\n`);
  process.exit(1);
};

const need = (name) => process.env[name] ?? fail(`${name} is not set`);

async function libertaiSigner() {
  // The package's exports map names only its index; its signer sits beside it in dist/.
  const index = import.meta.resolve('@libertai/x402');
  return import(new URL('sign.js', index).href);
}

async function main() {
  const requirement = JSON.parse(need('REQUIREMENT'));
  const account = privateKeyToAccount(need('PRIVATE_KEY'));
  const client = need('CLIENT');
  let payload;
  switch (client) {
    case 'x402-v2':
      payload = await new ExactEvmScheme(account).createPaymentPayload(2, requirement);
      break;
    case 'x402-v1':
      payload = await new ExactEvmSchemeV1(account).createPaymentPayload(1, requirement);
      break;
    case 'libertai':
    case 'libertai-permit': {
      const { createPaymentHeader } = await libertaiSigner();
      const publicClient =
        client === 'libertai-permit'
          ? createPublicClient({ chain: base, transport: http(need('RPC_URL')) })
          : undefined;
      const header = await createPaymentHeader(account, publicClient, requirement);
      payload = JSON.parse(header);
      break;
    }
    default:
      fail(`unknown CLIENT ${client}`);
  }
  process.stdout.write(`${JSON.stringify(payload, (_k, v) => (typeof v === 'bigint' ? v.toString() : v))}\n`);
}

main().catch((e) => fail(e?.stack ?? String(e)));
