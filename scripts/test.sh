#!/usr/bin/env bash
# The full test suite, from a fresh machine: installs what the tests need
# (Garage, PostgreSQL, the pinned Python packages, the AWS SDK for
# JavaScript, the WebAssembly toolchains of the transform examples), checks formatting and lints, runs the
# Rust unit and integration tests, then the pytest suite against the real
# binary, real Garage and real AWS clients. Everything it installs is cached
# in the usual per-user places (~/.cargo/bin, ~/.cache/hydrant-test).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
export PATH="$HOME/.cargo/bin:$PATH"
GARAGE_VERSION=2.5.0
WASM_TOOLS_VERSION=1.263.0
WIT_BINDGEN_VERSION=0.63.0

if ! command -v garage >/dev/null 2>&1 || ! garage --version 2>/dev/null | grep -q "$GARAGE_VERSION"; then
  step "installing Garage $GARAGE_VERSION (cargo install, once per machine; several minutes)"
  cargo install garage --locked --version "$GARAGE_VERSION"
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1 \
   || ! command -v clang >/dev/null 2>&1 || ! command -v wasm-ld >/dev/null 2>&1 \
   || [ ! -d /usr/include/wasm32-wasi ] || ! ls /usr/lib/llvm-*/lib/clang/*/lib/wasi/libclang_rt.builtins-wasm32.a >/dev/null 2>&1 \
   || ! command -v ffmpeg >/dev/null 2>&1 || ! command -v ffprobe >/dev/null 2>&1; then
  step "installing PostgreSQL, openssl, clang/lld/wasi-libc for the C transform and ffmpeg for video (Debian packages)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql openssl \
    clang lld wasi-libc libclang-rt-dev-wasm32 ffmpeg >/dev/null
fi

if ! rustup target list --installed | grep -qx wasm32-wasip2; then
  step "adding the wasm32-wasip2 Rust target (Rust transforms)"
  rustup target add wasm32-wasip2
fi
if ! wasm-tools --version 2>/dev/null | grep -q "$WASM_TOOLS_VERSION"; then
  step "installing wasm-tools $WASM_TOOLS_VERSION (C transforms; once per machine, about 3 minutes)"
  cargo install wasm-tools --locked --version "$WASM_TOOLS_VERSION"
fi
if ! wit-bindgen --version 2>/dev/null | grep -q "$WIT_BINDGEN_VERSION"; then
  step "installing wit-bindgen-cli $WIT_BINDGEN_VERSION (C transforms; once per machine, about 3 minutes)"
  cargo install wit-bindgen-cli --locked --version "$WIT_BINDGEN_VERSION"
fi

VENV="${XDG_CACHE_HOME:-$HOME/.cache}/hydrant-test/venv"
REQ_HASH=$(sha256sum tests/requirements.txt | cut -c1-16)
if [ ! -f "$VENV/.installed-$REQ_HASH" ]; then
  step "installing the test's Python packages into $VENV"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt
  touch "$VENV/.installed-$REQ_HASH"
fi
export PATH="$VENV/bin:$PATH"

JS_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/hydrant-test/js"
JS_HASH=$(sha256sum tests/js/package.json | cut -c1-16)
if [ ! -f "$JS_DIR/.installed-$JS_HASH" ]; then
  step "installing the AWS SDK for JavaScript v3 into $JS_DIR (npm)"
  rm -rf "$JS_DIR"
  mkdir -p "$JS_DIR"
  cp tests/js/package.json "$JS_DIR/"
  (cd "$JS_DIR" && npm install --no-audit --no-fund --silent)
  touch "$JS_DIR/.installed-$JS_HASH"
fi
export HYDRANT_JS_MODULES="$JS_DIR/node_modules"

step "disk space for target/ (a clean run needs about 7.5 GB)"
df -h . | tail -n 1

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

step "Rust unit and integration tests"
if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --no-fail-fast
else
  cargo test --no-fail-fast
fi

step "building the hydrant binary for the end-to-end tests"
cargo build --bin hydrant
export HYDRANT_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/hydrant"

step "end-to-end tests (pytest: real daemon, Garage, boto3, AWS CLI)"
python -m pytest tests -q -p no:cacheprovider "$@"
