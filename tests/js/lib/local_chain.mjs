// Shared by the test clients and the reference server: talking to the local anvil chain.
import { http, toHex } from 'viem';

// Anvil 1.7.1 ignores a Tempo (0x76) transaction's `calls` when it estimates gas, so
// eth_fillTransaction returns too little and open/topUp/close batches revert with OutOfGas.
// This viem transport raises the gas that eth_fillTransaction returns to at least `minGas`.
export function gasBumpingHttp(url, minGas) {
  const base = http(url);
  return (opts) => {
    const transport = base(opts);
    return {
      ...transport,
      async request(args) {
        const res = await transport.request(args);
        if (args.method === 'eth_fillTransaction' && res?.tx?.gas !== undefined && BigInt(res.tx.gas) < minGas) {
          res.tx.gas = toHex(minGas);
        }
        return res;
      },
    };
  };
}

// Only the hosts of `urls` may be contacted: mppx/viem fall back to public Tempo RPCs when
// a client is mis-wired, and in tests that must fail loudly instead of leaving the machine.
// Returns the unguarded fetch.
export function guardNetwork(urls) {
  const allowed = new Set(urls.map((u) => new URL(u).host));
  const realFetch = globalThis.fetch;
  globalThis.fetch = (input, init) => {
    const host = new URL(input instanceof Request ? input.url : String(input)).host;
    if (!allowed.has(host)) return Promise.reject(new Error(`network guard: refusing to contact ${host}`));
    return realFetch(input, init);
  };
  return realFetch;
}
