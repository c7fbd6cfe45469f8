#!/usr/bin/env bash
# Point-in-time restore of a RepeatRx PostgreSQL database (P4), with PostgreSQL's own recovery:
# a base backup (pg_basebackup) plus the WAL archive that pg_receivewal streamed, replayed up to
# a chosen time and not one transaction beyond it.
#
#   restore-to.sh --base BASE_BACKUP_DIR --wal WAL_ARCHIVE_DIR --target "2026-11-22T10:15:30Z" \
#                 --into NEW_DATA_DIR [--port 5433]
#
# NEW_DATA_DIR must not exist. The restored server is started on --port, replays the archive up to
# the target, is promoted, and is left running (stop it with pg_ctl -D NEW_DATA_DIR stop). Point
# RepeatRx at it (database_url); every server then re-applies the erasure ledger at start, so a
# patient erased after the target stays erased.
set -euo pipefail

base="" wal="" target="" into="" port=5433
while [ $# -gt 0 ]; do
  case "$1" in
    --base) base="$2"; shift 2 ;;
    --wal) wal="$2"; shift 2 ;;
    --target) target="$2"; shift 2 ;;
    --into) into="$2"; shift 2 ;;
    --port) port="$2"; shift 2 ;;
    *) echo "error: unknown argument $1" >&2; exit 2 ;;
  esac
done
for name in base wal target into; do
  if [ -z "${!name}" ]; then echo "error: --$name is required" >&2; exit 2; fi
done
[ -d "$base" ] || { echo "error: the base backup $base does not exist" >&2; exit 2; }
[ -d "$wal" ] || { echo "error: the WAL archive $wal does not exist" >&2; exit 2; }
[ ! -e "$into" ] || { echo "error: $into exists already; restore into a new folder" >&2; exit 2; }
# The restore command runs inside the data folder: it needs absolute paths.
into="$(realpath -m "$into")"

# PostgreSQL reads "2026-11-22 10:15:30+00", not the ISO "T…Z" form.
pg_target="$(printf '%s' "$target" | sed -E 's/T/ /; s/Z$/+00/')"
bin="${PG_BIN:-/usr/lib/postgresql/$(ls /usr/lib/postgresql | sort -V | tail -1)/bin}"

cp -a "$base" "$into"
chmod 700 "$into"
# pg_receivewal keeps the segment it is writing as NAME.partial: recovery needs it under its name.
staged="$into/restore_wal"
mkdir "$staged"
for f in "$wal"/*; do
  [ -e "$f" ] || continue
  name="$(basename "$f")"
  cp "$f" "$staged/${name%.partial}"
done
cat >> "$into/postgresql.auto.conf" <<CONF
restore_command = '[ -f "$staged/%f" ] && cp "$staged/%f" "%p"'
recovery_target_time = '$pg_target'
recovery_target_inclusive = true
recovery_target_action = 'promote'
port = $port
# The primary waited for its archive as a synchronous standby; the restored server has none.
synchronous_standby_names = ''
CONF
touch "$into/recovery.signal"
"$bin/pg_ctl" -D "$into" -l "$into/restore.log" -w start >/dev/null
for _ in $(seq 1 120); do
  if [ "$("$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -Atqc 'SELECT pg_is_in_recovery()' 2>/dev/null)" = "f" ]; then
    echo "Restored to $target into $into (port $port), promoted."
    exit 0
  fi
  sleep 0.5
done
echo "error: the restored server did not finish recovery; see $into/restore.log" >&2
exit 1
