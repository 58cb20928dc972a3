// Checks that our contract ABIs equal the ABIs mppx 0.11 uses (v1 legacy escrow and v2 precompile)
// and, but for settleWithPermit, @x402/evm 2.27's x402UptoPermit2Proxy ABI:
// every function (name, input types, output types, mutability), event (name, types, indexed) and
// error of the mppx ABI must be present in ours with the same shape, and ours may only add the
// extra entries listed below.   Usage: node tests/js/check_abi.mjs
import { readFileSync } from 'node:fs';
import { Session, SessionLegacy } from 'mppx/tempo';
import { x402UptoPermit2ProxyABI } from '@x402/evm';

const v1 = SessionLegacy.Session.Chain.escrowAbi;
const v2 = Session.Precompile.escrowAbi;

const type = (p) =>
  p.type.startsWith('tuple') ? `(${p.components.map(type).join(',')})${p.type.slice(5)}` : p.type;
const key = (it) => {
  if (it.type === 'function')
    return `function ${it.name}(${it.inputs.map(type)}) ${it.stateMutability} -> (${it.outputs.map(type)})`;
  if (it.type === 'event') return `event ${it.name}(${it.inputs.map((p) => type(p) + (p.indexed ? ' indexed' : ''))})`;
  if (it.type === 'error') return `error ${it.name}(${it.inputs.map(type)})`;
  return it.type;
};
const art = (n) => JSON.parse(readFileSync(new URL(`../../contracts/artifacts/${n}.json`, import.meta.url))).abi;

let bad = 0;
function compare(label, theirs, ours, allowedExtra) {
  const t = new Set(theirs.map(key));
  const o = new Set(ours.map(key));
  for (const k of t) if (!o.has(k)) { console.error(`${label}: missing ${k}`); bad++; }
  for (const k of o) if (!t.has(k) && !allowedExtra.some((re) => re.test(k))) { console.error(`${label}: extra ${k}`); bad++; }
  if (!bad) console.log(`${label}: ${t.size} reference entries matched`);
}
compare('StreamChannelEscrow vs mppx legacy escrow ABI', v1, art('StreamChannelEscrow'), []);
// The precompile ABI in mppx lists no errors; the stand-in adds its errors and the test-only hook.
compare('ChannelReserveStandIn vs mppx precompile ABI', v2, art('ChannelReserveStandIn'), [
  /^error /,
  /^function setNextExpiringNonceHash\(bytes32\)/,
]);
// The x402 upto proxy stand-in implements `settle` and the views; `settleWithPermit` (EIP-2612
// gas sponsoring, unused by the tests) and the event and errors only it raises are left out.
const uptoOnlyWithPermit = /^(settleWithPermit|SettledWithPermit|Permit2612AmountMismatch|InvalidPermit2Address|ReentrancyGuardReentrantCall)$/;
compare(
  'UptoPermit2ProxyStandIn vs @x402/evm x402UptoPermit2ProxyABI',
  x402UptoPermit2ProxyABI.filter((it) => !uptoOnlyWithPermit.test(it.name)),
  art('UptoPermit2ProxyStandIn'),
  [],
);
process.exit(bad ? 1 : 0);
