#!/usr/bin/env bash
# Validates tests/js/mppx_session_client.mjs end to end WITHOUT tollgate: against the real mppx 0.6.31
# v1 session server (tests/js/reference_v1_server.mjs) on a local anvil --network tempo.
#
#   tests/js/validate_harness.sh                    # run, check, clean up
#   tests/js/validate_harness.sh --update-fixture   # also rewrite tests/js/fixtures/reference_v1_wire.md
#   tests/js/validate_harness.sh --keep             # keep the scratch dir (logs, wire captures)
#
# Needs `npm ci` first. Listens on 127.0.0.1 only; stops every process it started (by PID).
# Steps:
#   1. check that contracts/artifacts match contracts/src (solc 0.8.37), that our ABIs equal mppx's, and
#      run the contracts' behavioural self-test (its own anvil);
#   2. start anvil 1.7.1 --network tempo --chain-id 42431 (Moderato's id, so mppx's defaults apply);
#   3. anvil_setCode StreamChannelEscrow's runtime code at mppx's Moderato escrow 0xe1c4…a336 and mine a
#      block at the current time;
#   4. start the reference server (payee = anvil dev account #1) with a wire capture;
#   5. run A: the client harness with payer #2 (GET SSE stream, 20 chunks, vouchers, top-up, close);
#      run B: payer #3 (POST SSE stream with a JSON body, no top-up, close)  [new payer: anvil quirk 2];
#   6. check both summaries and the escrow state on chain; optionally render the wire fixture.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
UPDATE_FIXTURE=0
KEEP=0
for arg in "$@"; do
  case "$arg" in
    --update-fixture) UPDATE_FIXTURE=1 ;;
    --keep) KEEP=1 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

ANVIL="$ROOT/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
ESCROW=0xe1c4d3dce17bc111181ddf716f75bae49e61a336
CHAIN_ID=42431
PAYEE_KEY=0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d   # anvil dev #1
PAYER_A_KEY=0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a # anvil dev #2
PAYER_B_KEY=0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6 # anvil dev #3

[ -x "$ANVIL" ] || { echo "anvil binary missing at $ANVIL; run: npm ci" >&2; exit 1; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-validate.XXXXXX")
ANVIL_PID=""
SERVER_PID=""
cleanup() {
  local rc=$?
  [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null || true
  [ -n "$ANVIL_PID" ] && kill "$ANVIL_PID" 2>/dev/null && wait "$ANVIL_PID" 2>/dev/null || true
  if [ "$rc" -ne 0 ]; then
    echo "validate_harness: FAILED (rc=$rc); logs in $WORK" >&2
    for f in server.err client-a.err client-b.err; do
      [ -s "$WORK/$f" ] && { echo "--- $f" >&2; tail -n 30 "$WORK/$f" >&2; }
    done
  elif [ "$KEEP" -eq 1 ]; then
    echo "validate_harness: scratch dir kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rpc() { # rpc <url> <method> <params-json>
  curl -sf -X POST -H 'content-type: application/json' \
    --data "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$2\",\"params\":$3}" "$1"
}
free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

echo "== 1. contracts"
node scripts/compile-contracts.mjs --check
node tests/js/check_abi.mjs
node tests/js/contracts_selftest.mjs

echo "== 2. anvil"
ANVIL_PORT=$(free_port)
RPC_URL="http://127.0.0.1:$ANVIL_PORT"
"$ANVIL" --host 127.0.0.1 --port "$ANVIL_PORT" --network tempo --chain-id "$CHAIN_ID" --silent \
  >"$WORK/anvil.log" 2>&1 &
ANVIL_PID=$!
for _ in $(seq 1 100); do rpc "$RPC_URL" eth_chainId '[]' >/dev/null 2>&1 && break; sleep 0.05; done
rpc "$RPC_URL" eth_chainId '[]' | grep -q '"0xa5bf"' || { echo "anvil did not come up with chain id $CHAIN_ID" >&2; exit 1; }
echo "anvil pid $ANVIL_PID at $RPC_URL"

echo "== 3. escrow at $ESCROW"
CODE=$(node -e 'process.stdout.write(require("./contracts/artifacts/StreamChannelEscrow.json").deployedBytecode.object)')
rpc "$RPC_URL" anvil_setCode "[\"$ESCROW\",\"$CODE\"]" >/dev/null
# Anvil's Tempo mode validates validAfter/validBefore against the latest block's timestamp: mine one now.
rpc "$RPC_URL" evm_mine "[$(date +%s)]" >/dev/null
[ "$(rpc "$RPC_URL" eth_getCode "[\"$ESCROW\",\"latest\"]" | node -pe 'JSON.parse(require("fs").readFileSync(0)).result.length')" -gt 100 ] \
  || { echo "anvil_setCode did not take" >&2; exit 1; }

echo "== 4. reference server (mppx 0.6.31)"
RPC_URL="$RPC_URL" CHAIN_ID=$CHAIN_ID ESCROW=$ESCROW SERVER_PRIVATE_KEY=$PAYEE_KEY WIRE_LOG="$WORK/server-wire.jsonl" \
  node tests/js/reference_v1_server.mjs >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
for _ in $(seq 1 300); do grep -q '"listening"' "$WORK/server.out" 2>/dev/null && break; sleep 0.1; done
BASE=$(node -pe 'JSON.parse(require("fs").readFileSync(process.argv[1],"utf8").split("\n")[0]).url' "$WORK/server.out")
echo "server pid $SERVER_PID at $BASE"

run_client() { # run_client <name> <payer key> [VAR=value ...]
  local name=$1 key=$2
  shift 2
  echo "== 5$name. client harness ($*)"
  if ! env URL="$BASE/v1/stream" RPC_URL="$RPC_URL" CHAIN_ID=$CHAIN_ID ESCROW=$ESCROW PRIVATE_KEY="$key" \
      WIRE_LOG="$WORK/client-$name-wire.jsonl" TIMEOUT_MS=90000 "$@" \
      node tests/js/mppx_session_client.mjs >"$WORK/client-$name.out" 2>"$WORK/client-$name.err"; then
    echo "client run $name failed" >&2
    return 1
  fi
  grep '"kind":"done"' "$WORK/client-$name.out"
}
run_client a "$PAYER_A_KEY" TOPUP_AMOUNT_RAW=250000 EXPECT_MESSAGES=20 MIN_NEED_VOUCHER=19
run_client b "$PAYER_B_KEY" REQUEST_METHOD=POST 'REQUEST_BODY={"prompt":"stream please"}' TOPUP_AMOUNT_RAW=0 \
  EXPECT_MESSAGES=20 MIN_NEED_VOUCHER=19

echo "== 6. checks"
RPC_URL="$RPC_URL" ESCROW=$ESCROW WORK="$WORK" node --input-type=module -e '
import { readFileSync } from "node:fs";
import { createPublicClient, http } from "viem";
import { SessionLegacy } from "mppx/tempo";
const abi = SessionLegacy.Session.Chain.escrowAbi;
const client = createPublicClient({ transport: http(process.env.RPC_URL) });
const problems = [];
for (const run of ["a", "b"]) {
  const lines = readFileSync(`${process.env.WORK}/client-${run}.out`, "utf8").split("\n").filter(Boolean).map((l) => JSON.parse(l));
  const done = lines.find((l) => l.kind === "done");
  const events = lines.filter((l) => l.kind === "event");
  const need = events.filter((e) => e.event === "payment-need-voucher").length;
  const msgs = events.filter((e) => e.event === "message").length;
  // stream resumed after vouchers: every need-voucher is followed by another message
  const order = events.map((e) => e.event);
  const resumed = order.every((e, i) => e !== "payment-need-voucher" || order.slice(i + 1).includes("message"));
  const ch = await client.readContract({ address: process.env.ESCROW, abi, functionName: "getChannel", args: [done.channelId] });
  const closed = await client.getContractEvents({ address: process.env.ESCROW, abi, eventName: "ChannelClosed", args: { channelId: done.channelId }, fromBlock: 0n });
  const check = (ok, what) => { if (!ok) problems.push(`run ${run}: ${what}`); };
  check(msgs === 20 && need === 19 && resumed, `stream did not resume after every voucher (messages ${msgs}, need-voucher ${need})`);
  check(order.at(-1) === "payment-receipt", "stream did not end with payment-receipt");
  check(ch.finalized && closed.length === 1, "channel not closed on chain");
  check(ch.settled === BigInt(done.spent) && BigInt(closed[0]?.args.settledToPayee ?? -1n) === ch.settled, "settled != spent");
  check(BigInt(closed[0]?.args.refundedToPayer ?? -1n) === ch.deposit - ch.settled, "refund != deposit - settled");
  if (run === "a") check(done.topUpTxHash && ch.deposit === BigInt(done.initialDeposit) + 250000n, "top-up not reflected on chain");
  console.log(`run ${run}: ${msgs} messages, ${need} need-voucher, deposit ${ch.deposit}, settled ${ch.settled}, finalized ${ch.finalized}, close tx ${done.closeTxHash}`);
}
if (problems.length) { console.error(problems.join("\n")); process.exit(1); }
'
if grep -qiE 'error|unhandled' "$WORK/server.err"; then
  echo "reference server logged errors:" >&2
  cat "$WORK/server.err" >&2
  exit 1
fi

if [ "$UPDATE_FIXTURE" -eq 1 ]; then
  mkdir -p tests/js/fixtures
  cat "$WORK/client-a.out" "$WORK/client-b.out" >"$WORK/clients.out"
  node tests/js/render_wire_fixture.mjs "$WORK/server-wire.jsonl" "$WORK/clients.out" >tests/js/fixtures/reference_v1_wire.md
  echo "wrote tests/js/fixtures/reference_v1_wire.md"
fi
echo "validate_harness: OK"
