#!/usr/bin/env bash
# The whole RepeatRx test suite: builds the workspace, runs every Rust unit and integration test,
# then the browser tests (e2e/, headless Debian Chromium against the real demo server).
# Needs Rust and Node.js 20+ with npm; installs what else it needs from Debian's packages when
# missing (Chromium for the browser tests, openssl for the TLS refusal tests).
# Exits non-zero if anything fails; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium fonts-dejavu-core)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ "${#missing[@]}" -ne 0 ]; then
  echo "==> installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi

echo "==> cargo build --workspace --all-targets"
cargo build --workspace --all-targets

failed=()

echo "==> cargo test --workspace"
if ! cargo test --workspace; then
  failed+=("cargo test")
fi

echo "==> browser tests (e2e/)"
export REPEATRX_BIN="${REPEATRX_BIN:-$PWD/target/debug/repeatrx}"
if ! (cd e2e && npm ci --no-audit --no-fund && npm test); then
  failed+=("browser tests")
fi

if [ "${#failed[@]}" -ne 0 ]; then
  echo "FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "All tests passed."
