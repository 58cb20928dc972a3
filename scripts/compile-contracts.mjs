#!/usr/bin/env node
// Compiles contracts/src/*.sol with the npm `solc` (solcjs 0.8.37, wasm; no network needed) into
// Foundry-style artifacts contracts/artifacts/<Name>.json = {abi, bytecode:{object}, deployedBytecode:{object}}.
//
//   node scripts/compile-contracts.mjs           # (re)write the artifacts
//   node scripts/compile-contracts.mjs --check   # exit 1 if the committed artifacts are stale
//
// The output is deterministic: same sources + same compiler + same settings = byte-identical files.
import { readdirSync, readFileSync, writeFileSync, mkdirSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import solc from 'solc';

const EXPECTED_SOLC = '0.8.37+commit.f401782d';
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = join(root, 'contracts', 'src');
const outDir = join(root, 'contracts', 'artifacts');
const check = process.argv.includes('--check');

const version = solc.version();
if (!version.startsWith(EXPECTED_SOLC)) {
  console.error(`expected solc ${EXPECTED_SOLC}, found ${version} (run npm ci)`);
  process.exit(1);
}

const files = readdirSync(srcDir).filter((f) => f.endsWith('.sol')).sort();
const sources = {};
for (const f of files) sources[`src/${f}`] = { content: readFileSync(join(srcDir, f), 'utf8') };

const input = {
  language: 'Solidity',
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: 'cancun',
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
  },
};

function findImports(path) {
  const p = join(root, 'contracts', path);
  return existsSync(p) ? { contents: readFileSync(p, 'utf8') } : { error: `not found: ${path}` };
}

const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
let failed = false;
for (const e of output.errors ?? []) {
  console.error(e.formattedMessage ?? e.message);
  if (e.severity === 'error') failed = true;
}
if (failed) process.exit(1);

mkdirSync(outDir, { recursive: true });
let stale = 0;
for (const [file, contracts] of Object.entries(output.contracts ?? {}).sort(([a], [b]) => a.localeCompare(b))) {
  for (const [name, c] of Object.entries(contracts).sort(([a], [b]) => a.localeCompare(b))) {
    const artifact = {
      abi: c.abi,
      bytecode: { object: `0x${c.evm.bytecode.object}` },
      deployedBytecode: { object: `0x${c.evm.deployedBytecode.object}` },
    };
    const text = `${JSON.stringify(artifact, null, 2)}\n`;
    const target = join(outDir, `${name}.json`);
    const rel = `contracts/artifacts/${name}.json`;
    if (check) {
      const current = existsSync(target) ? readFileSync(target, 'utf8') : '';
      if (current !== text) {
        console.error(`stale: ${rel} (from ${file}); run npm run compile-contracts`);
        stale++;
      }
      continue;
    }
    writeFileSync(target, text);
    console.log(`${rel}  runtime ${(c.evm.deployedBytecode.object.length / 2) | 0} bytes  (${file}, ${version})`);
  }
}
if (stale) process.exit(1);
if (check) console.log('artifacts up to date');
