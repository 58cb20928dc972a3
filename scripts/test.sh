#!/usr/bin/env bash
# The README's test command: every unit, integration, doc and bench-smoke test.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --all-features --all-targets
cargo test --all-features --doc
