#!/usr/bin/env bash
# Builds transform.wasm, a WebAssembly component, with plain cargo.
set -euo pipefail
cd "$(dirname "$0")"
rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2
cargo build --quiet --release --target wasm32-wasip2
cp target/wasm32-wasip2/release/hydrant_transform_example.wasm transform.wasm
echo "built $(pwd)/transform.wasm"
