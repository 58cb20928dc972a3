#!/usr/bin/env bash
# The README's test command: every unit, integration, property, doc and bench-smoke test,
# including the Tempo tests that run anvil and the real mppx client (pinned npm packages).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v node >/dev/null || { echo "node (20+) and npm are needed for the interop tests" >&2; exit 1; }
npm ci --no-audit --no-fund --loglevel=error
cargo test --all-features --all-targets
cargo test --all-features --doc
