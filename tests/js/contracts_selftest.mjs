#!/usr/bin/env node
// Behavioural self-test of contracts/artifacts/{StreamChannelEscrow,ChannelReserveStandIn}.json on a
// private anvil (--network tempo, chain 42431, pathUSD as the token), cross-checked against mppx's
// own channel-id, EIP-712 and ABI helpers. Spawns and stops its own anvil on 127.0.0.1.
//   node tests/js/contracts_selftest.mjs
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { Session, SessionLegacy } from 'mppx/tempo';
import {
  BaseError,
  ContractFunctionRevertedError,
  createPublicClient,
  createWalletClient,
  defineChain,
  hashDomain,
  hashTypedData,
  http,
  keccak256,
  parseAbi,
  toHex,
  zeroAddress,
} from 'viem';
import { privateKeyToAccount } from 'viem/accounts';

const root = new URL('../../', import.meta.url);
const art = (n) => JSON.parse(readFileSync(new URL(`contracts/artifacts/${n}.json`, root)));
const ANVIL = new URL('node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil', root).pathname;
const CHAIN_ID = 42431;
const V1 = '0xe1c4d3dce17bc111181ddf716f75bae49e61a336'; // mppx default Moderato v1 escrow
const V2 = '0x4d50500000000000000000000000000000000000'; // canonical TIP-1034 reserve
const PATHUSD = '0x20c0000000000000000000000000000000000000';
// Domain separator of the real TIP-1034 reserve on chain 42431 (docs/mpp-protocol.md §4.5).
const V2_DOMAIN_42431 = '0xa3aa475070603a80823360e5a4a0d3b4fe2cd4e82a109ee3c21a4640a199688d';
const KEYS = [
  '0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a', // #4 payer
  '0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba', // #5 payee
  '0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e', // #6 authorized signer
  '0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356', // #7 stranger / operator
];
const [payer, payee, signer, other] = KEYS.map((k) => privateKeyToAccount(k));
const v1Abi = art('StreamChannelEscrow').abi;
const v2Abi = art('ChannelReserveStandIn').abi;
const erc20 = parseAbi([
  'function approve(address,uint256) returns (bool)',
  'function balanceOf(address) view returns (uint256)',
]);
const SECP256K1_N = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n;

let passed = 0;
const ok = (cond, what) => {
  if (!cond) throw new Error(`check failed: ${what}`);
  passed++;
};
const eq = (a, b, what) => ok(a === b, `${what}: ${a} !== ${b}`);

const port = await new Promise((resolve) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const p = s.address().port;
    s.close(() => resolve(p));
  });
});
const RPC = `http://127.0.0.1:${port}`;
const anvil = spawn(ANVIL, ['--host', '127.0.0.1', '--port', String(port), '--network', 'tempo', '--chain-id', String(CHAIN_ID), '--silent'], {
  stdio: 'ignore',
});
const stopAnvil = () => anvil.exitCode === null && anvil.kill('SIGTERM');
process.on('exit', stopAnvil);

const chain = defineChain({
  id: CHAIN_ID,
  name: 'anvil-tempo',
  nativeCurrency: { name: 'USD', symbol: 'USD', decimals: 18 },
  rpcUrls: { default: { http: [RPC] } },
});
const pub = createPublicClient({ chain, transport: http(RPC), pollingInterval: 50 });
const wallet = (account) => createWalletClient({ account, chain, transport: http(RPC) });

async function send(account, address, abi, functionName, args) {
  const hash = await wallet(account).writeContract({ address, abi, functionName, args, gas: 500_000n });
  const r = await pub.waitForTransactionReceipt({ hash });
  if (r.status !== 'success') throw new Error(`${functionName} reverted (${hash})`);
  return r;
}
async function reverts(account, address, abi, functionName, args, errorName) {
  try {
    await pub.simulateContract({ account, address, abi, functionName, args });
  } catch (e) {
    const rev = e instanceof BaseError ? e.walk((x) => x instanceof ContractFunctionRevertedError) : null;
    eq(rev?.data?.errorName, errorName, `${functionName} revert reason`);
    return;
  }
  throw new Error(`${functionName} did not revert (expected ${errorName})`);
}
const events = (abi, receipt, name) =>
  pub
    .getContractEvents({ abi, eventName: name, blockHash: receipt.blockHash })
    .then((l) => l.filter((x) => x.transactionHash === receipt.transactionHash));
const balance = (who) => pub.readContract({ address: PATHUSD, abi: erc20, functionName: 'balanceOf', args: [who] });
const rpc = (method, params) => pub.request({ method, params });
/** Same signature with s -> n - s and v flipped: valid for ecrecover, but high-s. */
const malleate = (sig) => {
  const s = BigInt(`0x${sig.slice(66, 130)}`);
  const v = Number.parseInt(sig.slice(130, 132), 16);
  return `${sig.slice(0, 66)}${(SECP256K1_N - s).toString(16).padStart(64, '0')}${(v === 27 ? 28 : 27).toString(16)}`;
};

async function main() {
  for (let i = 0; i < 100; i++) {
    try {
      await pub.getChainId();
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  await rpc('anvil_setCode', [V1, art('StreamChannelEscrow').deployedBytecode.object]);
  await rpc('anvil_setCode', [V2, art('ChannelReserveStandIn').deployedBytecode.object]);
  await rpc('evm_mine', [Math.floor(Date.now() / 1000)]);
  const legacySign = (account, channelId, amount) =>
    SessionLegacy.Session.Voucher.signVoucher(wallet(account), account, { channelId, cumulativeAmount: amount }, V1, CHAIN_ID);
  const v2Sign = (account, channelId, amount) =>
    Session.Precompile.Voucher.signVoucher(wallet(account), account, { channelId, cumulativeAmount: amount }, V2, CHAIN_ID);

  // ------------------------------------------------------------ v1 StreamChannelEscrow
  const v1Read = (functionName, args = []) => pub.readContract({ address: V1, abi: v1Abi, functionName, args });
  const v1Domain = { name: 'Tempo Stream Channel', version: '1', chainId: CHAIN_ID, verifyingContract: V1 };
  eq(await v1Read('domainSeparator'), hashDomain({ domain: v1Domain, types: { EIP712Domain: [
    { name: 'name', type: 'string' }, { name: 'version', type: 'string' }, { name: 'chainId', type: 'uint256' }, { name: 'verifyingContract', type: 'address' },
  ] } }), 'v1 domainSeparator');
  eq(await v1Read('VOUCHER_TYPEHASH'), keccak256(toHex('Voucher(bytes32 channelId,uint128 cumulativeAmount)')), 'v1 typehash');
  eq(await v1Read('CLOSE_GRACE_PERIOD'), 900n, 'v1 grace');
  const salt1 = keccak256(toHex('salt-1'));
  const id1 = await v1Read('computeChannelId', [payer.address, payee.address, PATHUSD, salt1, zeroAddress]);
  eq(id1, SessionLegacy.Session.Channel.computeId({ payer: payer.address, payee: payee.address, token: PATHUSD, salt: salt1, authorizedSigner: zeroAddress, escrowContract: V1, chainId: CHAIN_ID }), 'v1 channelId = mppx computeId');
  eq(await v1Read('getVoucherDigest', [id1, 123n]), hashTypedData({ domain: v1Domain, types: { Voucher: [{ name: 'channelId', type: 'bytes32' }, { name: 'cumulativeAmount', type: 'uint128' }] }, primaryType: 'Voucher', message: { channelId: id1, cumulativeAmount: 123n } }), 'v1 voucher digest');

  await reverts(payer, V1, v1Abi, 'open', [zeroAddress, PATHUSD, 1n, salt1, zeroAddress], 'InvalidPayee');
  await send(payer, PATHUSD, erc20, 'approve', [V1, 1_000_000n]);
  const escrow0 = await balance(V1);
  const rOpen = await send(payer, V1, v1Abi, 'open', [payee.address, PATHUSD, 1_000_000n, salt1, zeroAddress]);
  const [opened] = await events(v1Abi, rOpen, 'ChannelOpened');
  eq(opened.args.channelId, id1, 'ChannelOpened.channelId');
  eq(opened.args.deposit, 1_000_000n, 'ChannelOpened.deposit');
  eq((await balance(V1)) - escrow0, 1_000_000n, 'deposit pulled with transferFrom');
  let ch = await v1Read('getChannel', [id1]);
  ok(!ch.finalized && ch.payer === payer.address && ch.payee === payee.address && ch.deposit === 1_000_000n && ch.settled === 0n, 'getChannel after open');
  await reverts(payer, V1, v1Abi, 'open', [payee.address, PATHUSD, 1n, salt1, zeroAddress], 'ChannelAlreadyExists');

  const sig300 = await legacySign(payer, id1, 300_000n);
  ok(await SessionLegacy.Session.Voucher.verifyVoucher(V1, CHAIN_ID, { channelId: id1, cumulativeAmount: 300_000n, signature: sig300 }, payer.address), 'mppx verifies our voucher');
  await reverts(other, V1, v1Abi, 'settle', [id1, 300_000n, sig300], 'NotPayee');
  await reverts(payee, V1, v1Abi, 'settle', [id1, 300_000n, await legacySign(other, id1, 300_000n)], 'InvalidSignature');
  await reverts(payee, V1, v1Abi, 'settle', [id1, 300_000n, malleate(sig300)], 'InvalidSignature');
  await reverts(payee, V1, v1Abi, 'settle', [id1, 300_000n, sig300.slice(0, 130)], 'InvalidSignature');
  await reverts(payee, V1, v1Abi, 'settle', [id1, 2_000_000n, await legacySign(payer, id1, 2_000_000n)], 'AmountExceedsDeposit');
  const rSettle = await send(payee, V1, v1Abi, 'settle', [id1, 300_000n, sig300]);
  const [settled] = await events(v1Abi, rSettle, 'Settled');
  ok(settled.args.deltaPaid === 300_000n && settled.args.newSettled === 300_000n, 'Settled event');
  eq((await balance(V1)) - escrow0, 700_000n, 'settle paid the payee');
  await reverts(payee, V1, v1Abi, 'settle', [id1, 300_000n, sig300], 'AmountNotIncreasing');

  await reverts(other, V1, v1Abi, 'requestClose', [id1], 'NotPayer');
  const rReq = await send(payer, V1, v1Abi, 'requestClose', [id1]);
  const [req] = await events(v1Abi, rReq, 'CloseRequested');
  ch = await v1Read('getChannel', [id1]);
  eq(req.args.closeGraceEnd, ch.closeRequestedAt + 900n, 'closeGraceEnd');
  await reverts(payer, V1, v1Abi, 'withdraw', [id1], 'CloseNotReady');
  await send(payer, PATHUSD, erc20, 'approve', [V1, 100_000n]);
  await reverts(other, V1, v1Abi, 'topUp', [id1, 100_000n], 'NotPayer');
  const rTop = await send(payer, V1, v1Abi, 'topUp', [id1, 100_000n]);
  eq((await events(v1Abi, rTop, 'CloseRequestCancelled')).length, 1, 'topUp cancels the close request');
  eq((await events(v1Abi, rTop, 'TopUp'))[0].args.newDeposit, 1_100_000n, 'TopUp.newDeposit');
  ch = await v1Read('getChannel', [id1]);
  ok(ch.closeRequestedAt === 0n && ch.deposit === 1_100_000n, 'state after topUp');

  await send(payer, V1, v1Abi, 'requestClose', [id1]);
  await rpc('evm_increaseTime', [899]);
  await rpc('evm_mine', []);
  await reverts(payer, V1, v1Abi, 'withdraw', [id1], 'CloseNotReady');
  await rpc('evm_increaseTime', [2]);
  await rpc('evm_mine', []);
  await reverts(other, V1, v1Abi, 'withdraw', [id1], 'NotPayer');
  const rW = await send(payer, V1, v1Abi, 'withdraw', [id1]);
  const [closedW] = await events(v1Abi, rW, 'ChannelClosed');
  ok(closedW.args.settledToPayee === 300_000n && closedW.args.refundedToPayer === 800_000n, 'withdraw refunds deposit - settled');
  eq(await balance(V1), escrow0, 'escrow emptied by withdraw');
  ok((await v1Read('getChannel', [id1])).finalized, 'finalized after withdraw');
  await reverts(payee, V1, v1Abi, 'settle', [id1, 400_000n, await legacySign(payer, id1, 400_000n)], 'ChannelFinalized');
  await reverts(payer, V1, v1Abi, 'topUp', [id1, 1n], 'ChannelFinalized');

  // close with an authorized signer, then close-without-new-voucher.
  const salt2 = keccak256(toHex('salt-2'));
  await send(payer, PATHUSD, erc20, 'approve', [V1, 500_000n]);
  await send(payer, V1, v1Abi, 'open', [payee.address, PATHUSD, 500_000n, salt2, signer.address]);
  const id2 = await v1Read('computeChannelId', [payer.address, payee.address, PATHUSD, salt2, signer.address]);
  await reverts(payee, V1, v1Abi, 'close', [id2, 200_000n, await legacySign(payer, id2, 200_000n)], 'InvalidSignature');
  await reverts(payer, V1, v1Abi, 'close', [id2, 200_000n, await legacySign(signer, id2, 200_000n)], 'NotPayee');
  const rClose = await send(payee, V1, v1Abi, 'close', [id2, 200_000n, await legacySign(signer, id2, 200_000n)]);
  const [closed2] = await events(v1Abi, rClose, 'ChannelClosed');
  ok(closed2.args.settledToPayee === 200_000n && closed2.args.refundedToPayer === 300_000n, 'close settles + refunds');
  eq((await events(v1Abi, rClose, 'Settled'))[0].args.deltaPaid, 200_000n, 'close emits Settled for the delta');
  const batch = await v1Read('getChannelsBatch', [[id1, id2]]);
  ok(batch.length === 2 && batch[0].finalized && batch[1].finalized && batch[1].settled === 200_000n, 'getChannelsBatch');

  const salt3 = keccak256(toHex('salt-3'));
  await send(payer, PATHUSD, erc20, 'approve', [V1, 50_000n]);
  await send(payer, V1, v1Abi, 'open', [payee.address, PATHUSD, 50_000n, salt3, zeroAddress]);
  const id3 = await v1Read('computeChannelId', [payer.address, payee.address, PATHUSD, salt3, zeroAddress]);
  const rClose0 = await send(payee, V1, v1Abi, 'close', [id3, 0n, '0x']);
  ok((await events(v1Abi, rClose0, 'ChannelClosed'))[0].args.refundedToPayer === 50_000n, 'close at 0 needs no signature');
  eq(await balance(V1), escrow0, 'escrow holds nothing for closed channels');

  // ------------------------------------------------------------ v2 ChannelReserveStandIn
  const v2Read = (functionName, args = []) => pub.readContract({ address: V2, abi: v2Abi, functionName, args });
  eq(await v2Read('domainSeparator'), V2_DOMAIN_42431, 'v2 domainSeparator equals the real reserve on 42431');
  eq(await v2Read('VOUCHER_TYPEHASH'), keccak256(toHex('Voucher(bytes32 channelId,uint96 cumulativeAmount)')), 'v2 typehash');
  const salt4 = keccak256(toHex('salt-4'));
  await send(payer, PATHUSD, erc20, 'approve', [V2, 2_000_000n]);
  await reverts(payer, V2, v2Abi, 'open', [payee.address, zeroAddress, PATHUSD, 1_000_000n, salt4, zeroAddress], 'ExpiringNonceHashNotSet');
  await reverts(payer, V2, v2Abi, 'open', [PATHUSD, zeroAddress, PATHUSD, 1_000_000n, salt4, zeroAddress], 'InvalidPayee');
  const nonceHash = keccak256(toHex('expiring-nonce-hash-1'));
  await send(other, V2, v2Abi, 'setNextExpiringNonceHash', [nonceHash]);
  await reverts(payer, V2, v2Abi, 'open', [payee.address, zeroAddress, PATHUSD, 0n, salt4, zeroAddress], 'ZeroDeposit');
  const r2open = await send(payer, V2, v2Abi, 'open', [payee.address, other.address, PATHUSD, 1_000_000n, salt4, zeroAddress]);
  const D = { payer: payer.address, payee: payee.address, operator: other.address, token: PATHUSD, salt: salt4, authorizedSigner: zeroAddress, expiringNonceHash: nonceHash };
  const id4 = Session.Precompile.Channel.computeId({ ...D, chainId: CHAIN_ID, escrow: V2 });
  const [o2] = await events(v2Abi, r2open, 'ChannelOpened');
  ok(o2.args.channelId === id4 && o2.args.expiringNonceHash === nonceHash && o2.args.deposit === 1_000_000n, 'v2 ChannelOpened (id = mppx computeId)');
  await reverts(payer, V2, v2Abi, 'open', [payee.address, zeroAddress, PATHUSD, 1n, salt4, zeroAddress], 'ExpiringNonceHashNotSet'); // consumed
  const full = await v2Read('getChannel', [D]);
  ok(full.state.deposit === 1_000_000n && full.descriptor.expiringNonceHash === nonceHash, 'v2 getChannel');
  const s2 = await v2Sign(payer, id4, 200_000n);
  await reverts(signer, V2, v2Abi, 'settle', [D, 200_000n, s2], 'NotPayeeOrOperator');
  await reverts(payee, V2, v2Abi, 'settle', [D, 200_000n, malleate(s2)], 'InvalidSignature');
  await send(other, V2, v2Abi, 'settle', [D, 200_000n, s2]); // the operator may settle
  eq((await v2Read('getChannelState', [id4])).settled, 200_000n, 'v2 settled');
  await reverts(payee, V2, v2Abi, 'topUp', [D, 1n], 'NotPayer');
  await reverts(payer, V2, v2Abi, 'topUp', [D, 0n], 'ZeroDeposit');
  await send(payer, V2, v2Abi, 'requestClose', [D]);
  const rTop2 = await send(payer, V2, v2Abi, 'topUp', [D, 500_000n]);
  ok((await events(v2Abi, rTop2, 'CloseRequestCancelled')).length === 1, 'v2 topUp cancels close');
  const s5 = await v2Sign(payer, id4, 500_000n);
  await reverts(payee, V2, v2Abi, 'close', [D, 500_000n, 600_000n, s5], 'CaptureAmountInvalid');
  await reverts(payee, V2, v2Abi, 'close', [D, 500_000n, 100_000n, s5], 'CaptureAmountInvalid');
  const escrowV2 = await balance(V2);
  const r2close = await send(payee, V2, v2Abi, 'close', [D, 500_000n, 400_000n, s5]);
  const [c2] = await events(v2Abi, r2close, 'ChannelClosed');
  ok(c2.args.settledToPayee === 400_000n && c2.args.refundedToPayer === 1_100_000n, 'v2 close capture/refund');
  eq(escrowV2 - (await balance(V2)), 1_300_000n, 'v2 close paid 200k to payee and refunded 1.1M');
  eq((await v2Read('getChannelState', [id4])).deposit, 0n, 'v2 close deletes the channel');
  await reverts(payee, V2, v2Abi, 'settle', [D, 600_000n, await v2Sign(payer, id4, 600_000n)], 'ChannelNotFound');

  // v2 forced close
  const nonceHash2 = keccak256(toHex('expiring-nonce-hash-2'));
  await send(payer, V2, v2Abi, 'setNextExpiringNonceHash', [nonceHash2]);
  await send(payer, V2, v2Abi, 'open', [payee.address, zeroAddress, PATHUSD, 300_000n, salt4, signer.address]);
  const D2 = { ...D, operator: zeroAddress, authorizedSigner: signer.address, expiringNonceHash: nonceHash2 };
  await send(payee, V2, v2Abi, 'settle', [D2, 100_000n, await v2Sign(signer, Session.Precompile.Channel.computeId({ ...D2, chainId: CHAIN_ID, escrow: V2 }), 100_000n)]);
  await send(payer, V2, v2Abi, 'requestClose', [D2]);
  await reverts(payer, V2, v2Abi, 'withdraw', [D2], 'CloseNotReady');
  await rpc('evm_increaseTime', [901]);
  await rpc('evm_mine', []);
  const rW2 = await send(payer, V2, v2Abi, 'withdraw', [D2]);
  const [w2] = await events(v2Abi, rW2, 'ChannelClosed');
  ok(w2.args.settledToPayee === 100_000n && w2.args.refundedToPayer === 200_000n, 'v2 withdraw');
  eq(await balance(V2), 0n, 'reserve emptied');
}

async function stopAndWait() {
  if (anvil.exitCode !== null || anvil.signalCode !== null) return;
  const exited = new Promise((r) => anvil.once('exit', r));
  anvil.kill('SIGTERM');
  await exited;
}

main().then(
  async () => {
    await stopAndWait();
    console.log(`contracts_selftest: OK (${passed} checks)`);
    process.exit(0);
  },
  async (e) => {
    await stopAndWait();
    console.error(`contracts_selftest: FAILED: ${e?.shortMessage ?? e?.message ?? e}`);
    process.exit(1);
  },
);
