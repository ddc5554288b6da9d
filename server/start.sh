#!/usr/bin/env bash
# Build (when needed) and start the arena Phoenix server in the background on 127.0.0.1:$PORT.
#   PORT=4400 ./start.sh      (PORT defaults to 4400)
# Env: BIND (listen address, default 127.0.0.1; BIND=0.0.0.0 for every interface),
#      ARENA_DEPS_PATH (dependency sources; default ../../shared/phoenix-1.7/deps from here,
#        and Hex `mix deps.get` when that folder is absent),
#      ARENA_SERVER_BUILD_DIR (default ${TMPDIR:-/tmp}/arena-server-build),
#      ARENA_STATIC_DIR (a folder to serve at /), PHOENIX_SKIP_APT=1 (never run apt-get).
# 1. installs Debian's Elixir/Erlang with apt-get if missing (needs root or sudo);
# 2. copies this mix project (and the dependency sources) into the build dir, so this folder
#    stays untouched, and runs MIX_ENV=prod mix compile there, if the sources changed;
# 3. starts `mix phx.server` in the background and waits (60 s at most) until GET / answers.
# Progress goes to stderr; the last line, on stdout, is the websocket URL:
#   URL=$(./start.sh)   ->   ws://127.0.0.1:4400/socket
# Pid file and log: $BUILD/server-$PORT.pid, $BUILD/server-$PORT.log. Stop with stop.sh.
set -euo pipefail
CALLER_PWD="$PWD"
. "$(dirname "${BASH_SOURCE[0]}")/env.sh"
PIDFILE="$BUILD/server-$PORT.pid"
LOG="$BUILD/server-$PORT.log"
URL="ws://$HOST:$PORT/socket"
[[ "$PORT" =~ ^[0-9]+$ ]] || { echo "start: PORT must be a number, got '$PORT'" >&2; exit 1; }

if [[ -f "$PIDFILE" ]] && is_beam "$(cat "$PIDFILE")"; then
  echo "start: already running on port $PORT (pid $(cat "$PIDFILE"), log $LOG)" >&2
  echo "$URL"; exit 0
fi
if port_open "$PORT"; then
  echo "start: port $PORT is already in use by another process; choose another PORT" >&2; exit 1
fi

# --- 1. Elixir. The Debian 12 packages of ../../shared/phoenix-1.7/setup.sh: `elixir` pulls in
# the Erlang it needs; erlang-dev has public_key/include/OTP-PUB-KEY.hrl, which Phoenix's
# phx.gen.cert task reads at compile time; the others are what the server uses.
APT_PACKAGES=(elixir erlang-dev erlang-crypto erlang-public-key erlang-ssl erlang-runtime-tools)
skip_apt="${PHOENIX_SKIP_APT:-${ARENA_SKIP_APT:-}}"
missing=()
# With an Elixir that is not Debian's (asdf, a Docker image...), apt is left alone.
if [[ "$skip_apt" != 1 ]] && command -v dpkg >/dev/null 2>&1 &&
   { ! command -v mix >/dev/null 2>&1 || dpkg -s elixir >/dev/null 2>&1; }; then
  for p in "${APT_PACKAGES[@]}"; do
    dpkg -s "$p" 2>/dev/null | grep -q '^Status: install ok installed' || missing+=("$p")
  done
fi
if ((${#missing[@]})); then
  SUDO=()
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { echo "start: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
    SUDO=(sudo)
  fi
  echo "start: apt-get install ${missing[*]}" >&2
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
for tool in elixir mix erl; do
  command -v "$tool" >/dev/null 2>&1 || { echo "start: '$tool' not found on PATH" >&2; exit 1; }
done

# --- 2. Build, in a copy (one build at a time per build dir).
mkdir -p "$BUILD/app"
exec 9>"$BUILD/.build.lock"
command -v flock >/dev/null 2>&1 && flock 9

# Copy keeping timestamps (an unchanged file is not recompiled); make the copies writable.
fresh_copy() { # src dst
  if [[ -e "$2" ]]; then chmod -R u+w "$2"; rm -rf "$2"; fi
  cp -R --preserve=timestamps "$1" "$2"
  chmod -R u+w "$2"
}

hash="$(source_hash)"
if [[ ! -f "$BUILD/.built" || "$(cat "$BUILD/.built")" != "$hash" ]]; then
  start=$SECONDS
  for entry in mix.exs mix.lock config lib; do
    if [[ -e "$HERE/$entry" ]]; then fresh_copy "$HERE/$entry" "$BUILD/app/$entry"; else rm -rf "$BUILD/app/$entry"; fi
  done
  cd "$BUILD/app"
  if [[ $DEPS_MODE == path ]]; then
    fresh_copy "$DEPS_SRC" "$BUILD/deps"
    export ARENA_DEPS_PATH="$BUILD/deps"
    echo "start: building in $BUILD/app, offline (deps from $DEPS_SRC), MIX_ENV=prod, $(elixir --version | tail -1)" >&2
  else
    unset ARENA_DEPS_PATH
    echo "start: no dependency sources at $DEPS_SRC: fetching them from Hex (mix deps.get)" >&2
    mix local.hex --force --if-missing </dev/null >&2
    mix deps.get --only prod </dev/null >&2
    echo "start: building in $BUILD/app, MIX_ENV=prod, $(elixir --version | tail -1)" >&2
  fi
  mix compile </dev/null >&2
  echo "$hash" >"$BUILD/.built"
  echo "start: built in $((SECONDS - start)) s" >&2
else
  cd "$BUILD/app"
  if [[ $DEPS_MODE == path ]]; then export ARENA_DEPS_PATH="$BUILD/deps"; else unset ARENA_DEPS_PATH; fi
fi

# --- 3. Start.
# A relative ARENA_STATIC_DIR means relative to where start.sh was called from, not the build dir.
if [[ -n "${ARENA_STATIC_DIR:-}" ]]; then
  ARENA_STATIC_DIR="$(cd "$CALLER_PWD" && cd "$ARENA_STATIC_DIR" && pwd)" ||
    { echo "start: ARENA_STATIC_DIR is not a folder: $ARENA_STATIC_DIR" >&2; exit 1; }
  export ARENA_STATIC_DIR
fi
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
export PORT
# mix execs elixir -> erl -> beam.smp, so $! is the BEAM's own pid.
nohup mix phx.server >"$LOG" 2>&1 </dev/null 9>&- &
PID=$!
echo "$PID" >"$PIDFILE"

deadline=$((SECONDS + 60))
while ((SECONDS < deadline)); do
  if http_answers "$PORT"; then
    echo "start: arena server (Phoenix) up on $HOST:$PORT (pid $PID, log $LOG)" >&2
    echo "$URL"; exit 0
  fi
  if ! kill -0 "$PID" 2>/dev/null; then
    echo "start: server exited during start; end of $LOG:" >&2; tail -30 "$LOG" >&2
    rm -f "$PIDFILE"; exit 1
  fi
  sleep 0.2
done
echo "start: no answer on port $PORT within 60 s (pid $PID still running; stop.sh stops it); see $LOG" >&2
exit 1
