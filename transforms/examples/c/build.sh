#!/usr/bin/env bash
# Builds transform.wasm, a WebAssembly component, from C:
#   Debian's clang + lld + wasi-libc (apt-get install clang lld wasi-libc libclang-rt-dev-wasm32),
#   wit-bindgen-cli 0.63.0 and wasm-tools 1.263.0 (cargo install ... --locked),
#   the WASI reactor adapter from the wasi-preview1-component-adapter-provider crate.
set -euo pipefail
cd "$(dirname "$0")"
for tool in clang wit-bindgen wasm-tools; do
  command -v "$tool" >/dev/null || { echo "$tool not found (see the top of build.sh)" >&2; exit 1; }
done
if [ transform.wasm -nt guest.c ] && [ transform.wasm -nt ../../wit/transform.wit ]; then
  echo "up to date: $(pwd)/transform.wasm"; exit 0
fi
mkdir -p gen
wit-bindgen c ../../wit --world transformer --out-dir gen >/dev/null
[ -f gen/adapter.wasm ] || cargo run --quiet --release --manifest-path adapter/Cargo.toml --target-dir gen/adapter-target -- gen/adapter.wasm
clang --target=wasm32-wasi -O2 -mexec-model=reactor -Igen \
  -o gen/core.wasm guest.c gen/transformer.c gen/transformer_component_type.o
wasm-tools component new gen/core.wasm --adapt wasi_snapshot_preview1=gen/adapter.wasm -o transform.wasm
echo "built $(pwd)/transform.wasm"
