#!/usr/bin/env node
// Native-solc command-line shim over the official WebAssembly compiler (npm `solc`).
// py-solc-x (and so ape-solidity) runs `solc-v<version> --version` and
// `solc-v<version> --standard-json [--base-path P] [--include-path P] [--allow-paths P]`.
// This answers both, offline, so `ape compile` works without downloading a native binary.
'use strict';
const fs = require('fs');
const path = require('path');
const solc = require(path.join(__dirname, '..', 'node_modules', 'solc'));

const args = process.argv.slice(2);

if (args.includes('--version')) {
  // py-solc-x parses "Version: <x.y.z+commit...>".
  process.stdout.write('solc, the solidity compiler commandline interface\nVersion: ' + solc.version() + '\n');
  process.exit(0);
}

if (!args.includes('--standard-json')) {
  process.stderr.write('solc-wasm: only --version and --standard-json are supported\n');
  process.exit(2);
}

// Roots an import may be read from: the base path, include paths, and the working directory.
const roots = [];
for (let i = 0; i < args.length; i++) {
  if (['--base-path', '--include-path', '--allow-paths'].includes(args[i]) && args[i + 1]) {
    for (const p of args[i + 1].split(',')) roots.push(p);
    i++;
  }
}
roots.push(process.cwd());

function findImports(importPath) {
  const candidates = path.isAbsolute(importPath) ? [importPath] : roots.map((r) => path.resolve(r, importPath));
  for (const file of candidates) {
    if (fs.existsSync(file) && fs.statSync(file).isFile()) {
      return { contents: fs.readFileSync(file, 'utf8') };
    }
  }
  return { error: 'File not found: ' + importPath };
}

const chunks = [];
process.stdin.on('data', (c) => chunks.push(c));
process.stdin.on('end', () => {
  const input = Buffer.concat(chunks).toString('utf8');
  process.stdout.write(solc.compile(input, { import: findImports }));
});
