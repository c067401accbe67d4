#!/usr/bin/env bash
# Builds transform.wasm, a WebAssembly component, with componentize-js
# (installed from npm by package.json).
set -euo pipefail
cd "$(dirname "$0")"
[ -x node_modules/.bin/componentize-js ] || npm install --no-audit --no-fund --silent
if [ transform.wasm -nt transform.js ] && [ transform.wasm -nt ../../wit/transform.wit ]; then
  echo "up to date: $(pwd)/transform.wasm"; exit 0
fi
npm run --silent build
echo "built $(pwd)/transform.wasm"
