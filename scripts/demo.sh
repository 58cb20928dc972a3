#!/usr/bin/env bash
# The README's first command: the paid OpenAI-compatible proxy demo, on a fresh machine.
#
# Installs the pinned npm packages if they are missing (anvil 1.7.1 comes from
# @foundry-rs/anvil), then builds and runs `examples/llm_proxy`'s demo: a local Tempo chain
# (anvil --network tempo) with the v1 escrow installed, the proxy on 127.0.0.1 with the
# simulated model, and a paying client streaming one completion. Everything it starts stops
# when it ends. Extra arguments go to the demo (`--stay` keeps the chain and proxy running).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil ] && [ -z "${ANVIL_BIN:-}" ]; then
  command -v npm >/dev/null || { echo "npm (Node 20+) is needed to install the pinned anvil; or set ANVIL_BIN" >&2; exit 1; }
  npm ci --no-audit --no-fund --loglevel=error
fi
exec cargo run --quiet --features full --example llm_proxy -- demo "$@"
