#!/usr/bin/env bash
# Stop the server that start.sh started on $PORT (default 4400): SIGTERM, SIGKILL after 10 s.
#   PORT=4400 ./stop.sh       env: ARENA_SERVER_BUILD_DIR (same as for start.sh)
set -uo pipefail
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
PIDFILE="$BUILD/server-$PORT.pid"

if [[ ! -f "$PIDFILE" ]]; then
  echo "no server started by start.sh on port $PORT (no $PIDFILE)"; exit 0
fi
PID="$(cat "$PIDFILE")"
if is_beam "$PID"; then
  kill -TERM "$PID"
  for _ in $(seq 1 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.2; done
  if kill -0 "$PID" 2>/dev/null; then
    echo "pid $PID still running after 10 s: SIGKILL"; kill -KILL "$PID"
  fi
  echo "stopped server on port $PORT (pid $PID)"
else
  echo "server on port $PORT (pid $PID) was not running"
fi
rm -f "$PIDFILE"
