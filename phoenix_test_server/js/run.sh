#!/usr/bin/env bash
# Builds phoenix_test_server, starts it on a free port, runs the phoenix.js check against it and
# stops it. Exit status is the check's; its last line reads "N passed, M failed".
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"

cargo build -q -p phoenix_test_server --bin phoenix_test_server
target_dir="$(cargo metadata --format-version 1 --no-deps \
  | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).target_directory))')"
bin="$target_dir/debug/phoenix_test_server"

if [ ! -d node_modules ]; then
  npm ci --no-audit --no-fund
fi

out="$(mktemp)"
"$bin" --port 0 >"$out" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -f "$out"' EXIT

for _ in $(seq 1 100); do
  [ -s "$out" ] && break
  kill -0 "$pid" 2>/dev/null || { echo "server exited early" >&2; exit 1; }
  sleep 0.1
done
url="$(head -n 1 "$out")"
[ -n "$url" ] || { echo "server did not print its URL" >&2; exit 1; }
echo "phoenix_test_server at $url"

node test.mjs "$url"
