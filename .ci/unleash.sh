#!/usr/bin/env bash
# Install and start a real Unleash server (unleash-server 7.5.1, pinned in tests/unleash/) for the
# integration tests marked `unleash`. Prints the server's PID on stdout (the only stdout line);
# progress goes to stderr. Stop it by that PID: `kill "$PID"`.
#
#   PID=$(.ci/unleash.sh) && export ROLLGUARD_TEST_UNLEASH_URL=http://127.0.0.1:4242/api
#
# Needs Node >= 20.17 with npm, and PostgreSQL reachable with the psql client (trust auth by default;
# set UNLEASH_DB_PASSWORD / PGPASSWORD otherwise). The database is dropped and recreated on every run:
# init tokens are only inserted into an empty database, and no flag survives from an earlier run.
#
# Environment (all optional): UNLEASH_PORT (4242), UNLEASH_DB_HOST (127.0.0.1), UNLEASH_DB_PORT (5432),
# UNLEASH_DB_USER (postgres), UNLEASH_DB_NAME (rollguard_unleash_test), UNLEASH_ADMIN_TOKEN
# ('*:*.test-admin-token'), UNLEASH_CLIENT_TOKEN ('*:development.test-client-token'),
# UNLEASH_LOG (log file, default $TMPDIR/rollguard-unleash.log), UNLEASH_READY_TIMEOUT_S (60).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="$here/tests/unleash"
port="${UNLEASH_PORT:-4242}"
db_host="${UNLEASH_DB_HOST:-127.0.0.1}"
db_port="${UNLEASH_DB_PORT:-5432}"
db_user="${UNLEASH_DB_USER:-postgres}"
db_name="${UNLEASH_DB_NAME:-rollguard_unleash_test}"
log="${UNLEASH_LOG:-${TMPDIR:-/tmp}/rollguard-unleash.log}"
timeout_s="${UNLEASH_READY_TIMEOUT_S:-60}"
export UNLEASH_PORT="$port" UNLEASH_DB_HOST="$db_host" UNLEASH_DB_PORT="$db_port" UNLEASH_DB_USER="$db_user" \
  UNLEASH_DB_NAME="$db_name"
if [[ -n "${UNLEASH_DB_PASSWORD:-}" ]]; then export PGPASSWORD="$UNLEASH_DB_PASSWORD"; fi

if curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; then
  echo "unleash.sh: something already answers on 127.0.0.1:$port; stop it first" >&2
  exit 1
fi

echo "unleash.sh: npm ci in $dir" >&2
# --ignore-scripts: no install script is needed (one of them is an analytics ping).
(cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2)

echo "unleash.sh: recreating database $db_name on $db_host:$db_port" >&2
psql -q -h "$db_host" -p "$db_port" -U "$db_user" -d postgres -v ON_ERROR_STOP=1 \
  -c "DROP DATABASE IF EXISTS \"$db_name\" WITH (FORCE)" -c "CREATE DATABASE \"$db_name\"" >&2

echo "unleash.sh: starting unleash on 127.0.0.1:$port (log: $log)" >&2
(cd "$dir" && exec node start.mjs) >"$log" 2>&1 &
pid=$!

deadline=$((SECONDS + timeout_s))
until curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; do
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "unleash.sh: unleash exited during startup; last log lines:" >&2
    tail -n 30 "$log" >&2
    exit 1
  fi
  if ((SECONDS >= deadline)); then
    echo "unleash.sh: unleash not healthy after ${timeout_s}s; stopping it" >&2
    kill "$pid" 2>/dev/null || true
    tail -n 30 "$log" >&2
    exit 1
  fi
  sleep 0.2
done
echo "unleash.sh: healthy; export ROLLGUARD_TEST_UNLEASH_URL=http://127.0.0.1:$port/api" >&2
echo "$pid"
