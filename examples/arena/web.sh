#!/usr/bin/env bash
# Builds Phoenix Arena for the browser and serves it from the embedded server's own HTTP port:
#   examples/arena/web.sh [--bots N] [--port P] [--bind IP]
# then open the printed address. Native windows (`cargo run --manifest-path examples/arena/Cargo.toml`)
# join the same room. Steps: the wasm32 target and wasm-bindgen-cli at the Cargo.lock version
# (installed once if missing), a size-optimised build (profile `web`), the JS bindings without the
# name section, then page + wasm + assets into examples/arena/dist/.
# Env: ARENA_WEB_BUILD_ONLY=1 builds and stops (CI); CARGO_TARGET_DIR is honoured;
# ARENA_WASM_OPT=1 also runs wasm-opt -Os. It is off by default: Debian 12's binaryen (108)
# rewrites wasm-bindgen's externref table so that the page fails at start ("Table.set(): Argument
# 1 is invalid"), and on this game it only saved 10 % (24.7 -> 22.1 MB) after the name section is gone.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
dist="$here/dist"
target_dir=${CARGO_TARGET_DIR:-$here/target}

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  echo "web: adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi
want=$(sed -n '/^name = "wasm-bindgen"$/{n;s/^version = "\(.*\)"$/\1/p;}' "$here/Cargo.lock")
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "web: installing wasm-bindgen-cli $want (have: ${have:-none}); a few minutes, once"
  env -u CARGO_TARGET_DIR cargo install -q wasm-bindgen-cli --version "$want" --force
fi

echo "web: building (profile web, wasm32)"
CARGO_TARGET_DIR="$target_dir" cargo build --manifest-path "$here/Cargo.toml" --profile web \
  --target wasm32-unknown-unknown --bin arena
wasm="$target_dir/wasm32-unknown-unknown/web/arena.wasm"

rm -rf "$dist"
mkdir -p "$dist"
wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section \
  --out-dir "$dist" --out-name arena "$wasm"
if [ -n "${ARENA_WASM_OPT:-}" ]; then
  before=$(stat -c %s "$dist/arena_bg.wasm")
  wasm-opt -Os --enable-reference-types --enable-bulk-memory --enable-nontrapping-float-to-int \
    --enable-sign-ext --enable-mutable-globals --enable-multivalue \
    "$dist/arena_bg.wasm" -o "$dist/arena_bg.wasm"
  echo "web: wasm-opt $before -> $(stat -c %s "$dist/arena_bg.wasm") bytes"
fi
cp "$here/web/index.html" "$dist/"
cp -r "$root/assets" "$dist/assets"
rm -f "$dist/assets/generate.py"
echo "web: $(du -sh "$dist" | cut -f1) in $dist"

[ -n "${ARENA_WEB_BUILD_ONLY:-}" ] && exit 0
echo "web: starting the embedded server with the page on it"
exec env CARGO_TARGET_DIR="$target_dir" cargo run --manifest-path "$here/Cargo.toml" --bin arena -- \
  --server --web-dir "$dist" "$@"
