#!/usr/bin/env bash
# The README's `serve` path on a fresh machine: the proxy of examples/llm_proxy.toml (or
# --config <file>) paid on a local Tempo chain that it starts.
#
# Installs the pinned npm packages if they are missing (anvil 1.7.1 comes from
# @foundry-rs/anvil; mppx, viem and openai serve the printed client recipe), then runs
# `llm_proxy serve --chain local`: anvil --network tempo on the port of `[payment] rpc_url`
# (127.0.0.1:8545) with the escrow installed, the proxy on `[server] listen`
# (127.0.0.1:8402), paid to anvil dev account 1, with the simulated model unless an
# upstream's API key is set. It prints how to point a client at it. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil ] && [ -z "${ANVIL_BIN:-}" ]; then
  command -v npm >/dev/null || { echo "npm (Node 20+) is needed to install the pinned anvil; or set ANVIL_BIN" >&2; exit 1; }
  npm ci --no-audit --no-fund --loglevel=error
fi
exec cargo run --quiet --features full --example llm_proxy -- serve --chain local "$@"
