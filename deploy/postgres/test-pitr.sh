#!/usr/bin/env bash
# Proves the PostgreSQL layout of deploy/postgres/README.md on this machine's PostgreSQL binaries,
# in throw-away clusters on spare ports (the main cluster is not touched):
#   1. a primary with WAL streamed to an archive by pg_receivewal (synchronously, through a slot)
#      and a base backup by pg_basebackup; a streaming standby made with pg_basebackup -R;
#   2. acknowledged writes, each stamped with its commit time, while a target time T is taken;
#   3. the primary crashes (pg_ctl stop -m immediate);
#   4. restore-to.sh rebuilds the database as of T: nothing after T is there, and nothing
#      acknowledged before T - 5 s is missing (in fact nothing acknowledged before T);
#   5. the standby had caught up with every acknowledged write and is promoted, taking writes.
# Run as root, it runs itself as the postgres user. Exits non-zero on any failure.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
bin="${PG_BIN:-/usr/lib/postgresql/$(ls /usr/lib/postgresql | sort -V | tail -1)/bin}"

if [ "${1:-}" != "--inner" ]; then
  work="$(mktemp -d /tmp/repeatrx-pitr-XXXXXX)"
  cp "$here/test-pitr.sh" "$here/restore-to.sh" "$work/"
  chmod 755 "$work"
  if [ "$(id -u)" = 0 ]; then
    chown -R postgres: "$work"
    status=0
    runuser -u postgres -- bash "$work/test-pitr.sh" --inner "$work" || status=$?
  else
    status=0
    bash "$work/test-pitr.sh" --inner "$work" || status=$?
  fi
  if [ "$status" = 0 ]; then rm -rf "$work"; else echo "(kept $work for a look)" >&2; fi
  exit "$status"
fi

work="$2"
cd "$work"
port_of() { echo $(( 20000 + (RANDOM % 20000) )); }
p1="$(port_of)"; p3="$(( p1 + 1 ))"; p2="$(( p1 + 2 ))"
q() { "$bin/psql" -h 127.0.0.1 -p "$1" -U postgres -d postgres -v ON_ERROR_STOP=1 -Atqc "$2"; }
pids=()
cleanup() {
  for pid in "${pids[@]:-}"; do kill "$pid" 2>/dev/null || true; done
  for d in primary standby restored; do
    [ -d "$work/$d" ] && "$bin/pg_ctl" -D "$work/$d" -m immediate stop >/dev/null 2>&1 || true
  done
}
trap cleanup EXIT
fail() { echo "FAILED: $*" >&2; for f in "$work"/*.log "$work"/restored/restore.log; do [ -f "$f" ] && tail -n 20 "$f" >&2; done; exit 1; }

echo "-- primary on port $p1"
"$bin/initdb" -D primary -U postgres --auth=trust >/dev/null
cat >> primary/postgresql.conf <<CONF
port = $p1
listen_addresses = '127.0.0.1'
unix_socket_directories = '$work'
wal_level = replica
max_wal_senders = 5
max_replication_slots = 5
synchronous_commit = remote_write
CONF
echo "host replication postgres 127.0.0.1/32 trust" >> primary/pg_hba.conf
"$bin/pg_ctl" -D primary -l primary.log -w start >/dev/null
q "$p1" "SELECT pg_create_physical_replication_slot('archive')" >/dev/null

echo "-- WAL streamed to the archive by pg_receivewal (synchronous: a commit waits for the archive)"
mkdir wal
"$bin/pg_receivewal" -h 127.0.0.1 -p "$p1" -U postgres -D wal -S archive --synchronous -n \
  --no-password > receivewal.log 2>&1 &
pids+=("$!")
# The archive joins as the synchronous standby named by application_name 'pg_receivewal'.
q "$p1" "ALTER SYSTEM SET synchronous_standby_names = 'pg_receivewal'" >/dev/null
q "$p1" "SELECT pg_reload_conf()" >/dev/null
for _ in $(seq 1 60); do
  [ "$(q "$p1" "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")" = 1 ] && break
  sleep 0.25
done
[ "$(q "$p1" "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'")" = 1 ] || fail "pg_receivewal did not become the synchronous archive"

echo "-- base backup, and a streaming standby on port $p3"
"$bin/pg_basebackup" -h 127.0.0.1 -p "$p1" -U postgres -D base -X stream -c fast >/dev/null
"$bin/pg_basebackup" -h 127.0.0.1 -p "$p1" -U postgres -D standby -X stream -c fast -R >/dev/null
cat >> standby/postgresql.auto.conf <<CONF
port = $p3
CONF
"$bin/pg_ctl" -D standby -l standby.log -w start >/dev/null

echo "-- acknowledged writes while the target time is taken"
q "$p1" "CREATE TABLE acked (id bigint PRIMARY KEY, at timestamptz NOT NULL)" >/dev/null
: > acked.txt
target=""
for i in $(seq 1 90); do
  # Each line is written only once the commit is acknowledged.
  at="$(q "$p1" "INSERT INTO acked VALUES ($i, clock_timestamp()) RETURNING to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")"
  echo "$i $at" >> acked.txt
  if [ "$i" = 60 ]; then
    sleep 0.3
    target="$(q "$p1" "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")"
    sleep 0.3
  fi
  sleep 0.1
done
[ -n "$target" ] || fail "no target time was taken"
echo "   target T = $target"

echo "-- the primary crashes"
"$bin/pg_ctl" -D primary -m immediate stop >/dev/null
sleep 0.5
kill "${pids[0]}" 2>/dev/null || true

echo "-- restore to T on port $p2"
bash "$work/restore-to.sh" --base base --wal wal --target "$target" --into restored --port "$p2"
restored_max="$(q "$p2" "SELECT coalesce(max(id), 0) FROM acked")"
after="$(q "$p2" "SELECT count(*) FROM acked WHERE at > '$target'")"
[ "$after" = 0 ] || fail "$after rows written after T are in the restore"
missing=0
while read -r id at; do
  if [[ "$at" < "$target" ]]; then
    [ "$(q "$p2" "SELECT count(*) FROM acked WHERE id = $id")" = 1 ] || missing=$((missing + 1))
  fi
done < acked.txt
[ "$missing" = 0 ] || fail "$missing writes acknowledged before T are missing from the restore"
echo "   restored rows 1..$restored_max: all acknowledged before T, none after"

echo "-- the standby had every acknowledged write and is promoted"
standby_count="$(q "$p3" "SELECT count(*) FROM acked")"
[ "$standby_count" = "$(wc -l < acked.txt)" ] || fail "the standby has $standby_count rows of $(wc -l < acked.txt)"
"$bin/pg_ctl" -D standby -w promote >/dev/null
# Promoting includes dropping the primary's wait for its archive, until one streams from here.
q "$p3" "ALTER SYSTEM SET synchronous_standby_names = ''" >/dev/null
q "$p3" "SELECT pg_reload_conf()" >/dev/null
q "$p3" "INSERT INTO acked VALUES (1000, clock_timestamp())" >/dev/null || fail "the promoted standby refuses writes"
echo "PostgreSQL PITR and standby: all checks passed."
