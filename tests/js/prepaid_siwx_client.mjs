// Signs in to a tollgate prepaid API with the real @x402/extensions 2.27.0 SIWX client
// helpers, as their docs show them: read the sign-in-with-x extension of the 402's
// PAYMENT-REQUIRED, `createSIWxPayload(completeInfo, signer, response.url)`, then
// `encodeSIWxHeader(payload)` in the SIGN-IN-WITH-X header.
//
// Env: BASE (http://127.0.0.1:port), KEY (0x private key), OTHER (another 0x address).
// Prints one JSON line: the session token the sign-in answered, the balance it reads, and
// proofs the Rust test presents itself: the good one again (a replay), a forged one (the
// address swapped), one for another domain, one for another chain, and a good one left
// unused (`spare`, for the expiry test).
import { createSIWxPayload, encodeSIWxHeader } from "@x402/extensions/sign-in-with-x";
import { decodePaymentRequiredHeader } from "@x402/core/http";
import { privateKeyToAccount } from "viem/accounts";

const { BASE, KEY, OTHER } = process.env;
const signer = privateKeyToAccount(KEY);

async function challenge() {
  const response = await fetch(`${BASE}/v1/sign-in`, { method: "POST" });
  if (response.status !== 402) throw new Error(`expected a 402, got ${response.status}`);
  const required = decodePaymentRequiredHeader(response.headers.get("PAYMENT-REQUIRED"));
  const extension = required.extensions["sign-in-with-x"];
  const chain = extension.supportedChains[0];
  return { info: { ...extension.info, chainId: chain.chainId, type: chain.type }, url: response.url };
}

// The documented flow.
const { info, url } = await challenge();
const payload = await createSIWxPayload(info, signer, url);
const good = encodeSIWxHeader(payload);
const signedIn = await fetch(`${BASE}/v1/sign-in`, { method: "POST", headers: { "SIGN-IN-WITH-X": good } });
const session = await signedIn.json();
const balance = await fetch(`${BASE}/v1/balance`, { headers: { Authorization: `Bearer ${session.token}` } });

// A proof of this signer presented as someone else's.
const fresh = await challenge();
const forged = encodeSIWxHeader({ ...(await createSIWxPayload(fresh.info, signer, fresh.url)), address: OTHER });

// Signed for another site (a phishing page relaying our challenge under its own name).
const relayed = await challenge();
const evil = { ...relayed.info, domain: "evil.test", uri: "http://evil.test/v1/sign-in" };
const otherDomain = encodeSIWxHeader(await createSIWxPayload(evil, signer, "http://evil.test/v1/sign-in"));

// Signed for a chain the server does not offer.
const wrongChain = await challenge();
const mainnet = { ...wrongChain.info, chainId: "eip155:1" };
const otherChain = encodeSIWxHeader(await createSIWxPayload(mainnet, signer, wrongChain.url));

// A good proof left unused (the expiry test presents it late).
const unused = await challenge();
const spare = encodeSIWxHeader(await createSIWxPayload(unused.info, signer, unused.url));

console.log(
  JSON.stringify({
    address: signer.address,
    signInStatus: signedIn.status,
    session,
    balanceStatus: balance.status,
    balance: await balance.json(),
    good,
    forged,
    otherDomain,
    otherChain,
    spare,
  }),
);
