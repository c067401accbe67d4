#!/usr/bin/env bash
# The full test suite, from a fresh machine: installs what the tests need
# (Garage, PostgreSQL, the pinned Python packages), checks formatting and lints, runs the
# Rust unit and integration tests, then the pytest suite against the real
# binary, real Garage and real AWS clients. Everything it installs is cached
# in the usual per-user places (~/.cargo/bin, ~/.cache/hydrant-test).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
export PATH="$HOME/.cargo/bin:$PATH"
GARAGE_VERSION=2.5.0

if ! command -v garage >/dev/null 2>&1 || ! garage --version 2>/dev/null | grep -q "$GARAGE_VERSION"; then
  step "installing Garage $GARAGE_VERSION (cargo install, once per machine; several minutes)"
  cargo install garage --locked --version "$GARAGE_VERSION"
fi

if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1; then
  step "installing PostgreSQL and openssl (Debian packages)"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql openssl >/dev/null
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
export HYDRANT_BIN="$PWD/target/debug/hydrant"

step "end-to-end tests (pytest: real daemon, Garage, boto3, AWS CLI)"
python -m pytest tests -q -p no:cacheprovider "$@"
