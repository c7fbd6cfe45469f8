#!/usr/bin/env bash
# The whole RepeatRx test suite: builds the workspace, runs every Rust unit and integration test,
# then the browser tests (e2e/, headless Debian Chromium against the real demo server); the store,
# application, server and browser tests run a second time on PostgreSQL.
# PostgreSQL: the server at REPEATRX_TEST_POSTGRES (default postgres://postgres@127.0.0.1:5432/postgres,
# trust auth, as CI has it); a local cluster that is down is started. Each test makes its own
# database (repeatrx_test_* / repeatrx_e2e_*); those of earlier runs are dropped first, but for any
# still in use by another run.
# Needs Rust, Python 3 and Node.js 20+ with npm; installs what else it needs from Debian's packages
# when missing (Chromium for the browser tests, openssl for the TLS refusal tests) and an S3 test
# server (moto) from PyPI into target/s3-test-venv.
# Exits non-zero if anything fails; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium fonts-dejavu-core)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
python3 -c "import venv, ensurepip" >/dev/null 2>&1 || missing+=(python3-venv)
if [ "${#missing[@]}" -ne 0 ]; then
  echo "==> installing ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
fi

echo "==> PostgreSQL"
pg_url="${REPEATRX_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"
export REPEATRX_TEST_POSTGRES="$pg_url"
if command -v pg_lsclusters >/dev/null 2>&1; then
  for version in $(pg_lsclusters --no-header | awk '$2 == "main" && $4 !~ /^online/ { print $1 }'); do
    echo "starting PostgreSQL ${version}/main"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
  done
fi
if ! psql "$pg_url" -Atqc 'SELECT 1' >/dev/null; then
  echo "error: PostgreSQL is not reachable at $pg_url; start it, or set REPEATRX_TEST_POSTGRES" >&2
  exit 1
fi
# A database still in use belongs to a test run beside this one (another checkout on the same
# server): it is left to that run, not forced away from under it.
psql "$pg_url" -Atqc "SELECT datname FROM pg_database WHERE datname LIKE 'repeatrx\_test\_%' OR datname LIKE 'repeatrx\_e2e\_%'" |
  while read -r db; do
    if ! dropped=$(psql "$pg_url" -qc "DROP DATABASE \"$db\"" 2>&1); then
      reason="${dropped#*ERROR:  }"
      echo "kept $db: ${reason%%$'\n'*}"
    fi
  done

echo "==> S3 test server (moto, from PyPI, in target/s3-test-venv)"
# The continuous-backup tests ship to a real S3-compatible server on 127.0.0.1.
venv="$PWD/target/s3-test-venv"
if [ ! -x "$venv/bin/moto_server" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'moto[server]==5.2.5'
fi
export REPEATRX_TEST_S3_SERVER="$venv/bin/moto_server"

echo "==> cargo build --workspace --all-targets"
cargo build --workspace --all-targets

failed=()

echo "==> cargo test --workspace"
if ! cargo test --workspace; then
  failed+=("cargo test")
fi

echo "==> cargo test: the application and server tests again, on PostgreSQL"
if ! REPEATRX_TEST_DATABASE=postgres cargo test -p repeatrx-app -p repeatrx; then
  failed+=("cargo test on PostgreSQL")
fi

echo "==> PostgreSQL point-in-time restore and standby (deploy/postgres/test-pitr.sh)"
if ! deploy/postgres/test-pitr.sh; then
  failed+=("PostgreSQL PITR")
fi

echo "==> browser tests (e2e/)"
export REPEATRX_BIN="${REPEATRX_BIN:-$PWD/target/debug/repeatrx}"
if ! (cd e2e && npm ci --no-audit --no-fund && npm test); then
  failed+=("browser tests")
fi

echo "==> browser tests again, on PostgreSQL"
if ! (cd e2e && REPEATRX_TEST_DATABASE=postgres npm test); then
  failed+=("browser tests on PostgreSQL")
fi

if [ "${#failed[@]}" -ne 0 ]; then
  echo "FAILED: ${failed[*]}" >&2
  exit 1
fi
echo "All tests passed."
