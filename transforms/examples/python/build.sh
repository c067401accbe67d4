#!/usr/bin/env bash
# Builds transform.wasm, a WebAssembly component, with componentize-py
# (pip install componentize-py==0.25.1).
set -euo pipefail
cd "$(dirname "$0")"
command -v componentize-py >/dev/null || { echo "componentize-py not found: pip install componentize-py==0.25.1" >&2; exit 1; }
if [ transform.wasm -nt app.py ] && [ transform.wasm -nt ../../wit/transform.wit ]; then
  echo "up to date: $(pwd)/transform.wasm"; exit 0
fi
componentize-py -d ../../wit -w transformer componentize app -o transform.wasm
echo "built $(pwd)/transform.wasm"
