#!/usr/bin/env node
// Runs the mppx 0.11 CLI (`npx mppx`, what the Tempo guide uses) with its own arguments,
// inside a network guard: only the hosts of GUARD_URLS (comma-separated: the proxy and the
// chain) may be contacted, so a mis-wired run fails instead of reaching public Tempo RPCs.
// Usage: GUARD_URLS=<proxy>,<rpc> MPPX_PRIVATE_KEY=0x… node mppx_cli.mjs [mppx arguments…]
// Everything else is the CLI's own behaviour and output.
import { guardNetwork } from './lib/local_chain.mjs';

const guard = (process.env.GUARD_URLS ?? '').split(',').filter(Boolean);
if (!guard.length) {
  console.error('mppx_cli: FAILED: set GUARD_URLS');
  process.exit(1);
}
guardNetwork(guard);
process.argv = [process.argv[0], 'mppx', ...process.argv.slice(2)];
// The package's bin (dist/bin.js) is this import plus serve(); its exports map hides it.
const { default: cli } = await import('../../node_modules/mppx/dist/cli/cli.js');
await cli.serve();
