# Sourced by start.sh and stop.sh: paths and environment. Not meant to be run.
# Nothing is written inside this folder: the build happens in a copy, in $BUILD.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILD="${ARENA_SERVER_BUILD_DIR:-${TMPDIR:-/tmp}/arena-server-build}"
PORT="${PORT:-4400}"

# Offline dependency sources (one folder per package, mix.exs rewritten to path deps): by default
# the shared Phoenix 1.7 tree next to the repo (../../shared/phoenix-1.7/deps from here). When that
# folder does not exist, the build falls back to Hex (`mix deps.get`, needs the network).
DEPS_SRC="${ARENA_DEPS_PATH:-$HERE/../../shared/phoenix-1.7/deps}"
if [[ -d "$DEPS_SRC" ]]; then
  DEPS_SRC="$(cd "$DEPS_SRC" && pwd)"
  DEPS_MODE=path
else
  DEPS_MODE=hex
fi

export MIX_ENV=prod
export LANG=C.UTF-8 LC_ALL=C.UTF-8 # else the VM warns about latin1 filename encoding
if [[ $DEPS_MODE == path ]]; then
  # Offline: no Hex at all, and a mix home of our own in the build dir.
  export HEX_OFFLINE=1 MIX_HOME="$BUILD/mix_home" HEX_HOME="$BUILD/hex_home"
fi

# The address to probe and print: 127.0.0.1 unless BIND names one specific address.
case "${BIND:-127.0.0.1}" in
  "" | 127.0.0.1 | localhost | 0.0.0.0 | all | any | "*" | :: | "[::]") HOST=127.0.0.1 ;;
  *:*) HOST="[${BIND#[}"; HOST="${HOST%]}]" ;;
  *) HOST="$BIND" ;;
esac

# Digest of what a build is made from: this folder's mix project (+ the deps sources and mode).
source_hash() {
  {
    echo "mode=$DEPS_MODE deps=$DEPS_SRC"
    (cd "$HERE" && find mix.exs mix.lock config lib -type f -print0 2>/dev/null | LC_ALL=C sort -z | xargs -0 sha256sum)
    if [[ $DEPS_MODE == path ]]; then
      (cd "$DEPS_SRC" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    fi
  } | sha256sum | cut -d' ' -f1
}

# True when something accepts TCP connections on $HOST:$1.
port_open() {
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "${HOST//[\[\]]/}" "$1" 2>/dev/null
}

# True when GET http://$HOST:$1/ answers with an HTTP status line (no curl needed).
http_answers() {
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2" || exit 1
    printf "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" >&3
    IFS= read -r line <&3 && [[ $line == HTTP/1.* ]]' _ "${HOST//[\[\]]/}" "$1" 2>/dev/null
}

# True when $1 is a live BEAM process (guards against a stale pid file naming a reused pid).
is_beam() {
  [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null && [[ "$(cat "/proc/$1/comm" 2>/dev/null)" == beam* ]]
}
