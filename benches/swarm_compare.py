#!/usr/bin/env python3
"""Side by side: the swarm example (Rust, one Bevy app) and phoenix.js (one node process) doing the
same work against the same test server, at several socket counts, runs interleaved.

    python3 benches/swarm_compare.py [--sizes 10,100,1000] [--runs 3] [--seconds 30] [--rate 5]
        [--variant 'tick 10 ms=--tick-ms 10' ...]

Builds `examples/swarm` and the `phoenix_test_server` binary in release, starts a fresh server
process per run (so the client's numbers are the client's alone), and prints per size the medians
of client CPU per message, resident memory per socket, messages received per second, reply latency
(push to reply, as each client's app sees it) and the idle frame of the Rust swarm, with
phoenix.js / Rust ratios. Needs node (benches/js, `npm ci` there).
Each `--variant LABEL=ARGS` adds a Rust row run with those extra swarm arguments (interleaved too);
ratios are to the first Rust row. ARGS starting with `@PATH` run the swarm binary at PATH instead of
this checkout's (an A/B of two builds: copy the other build's `release/examples/swarm` aside first).
`--raw-variant LABEL=ARGS` adds a `swarm_raw` row run with those arguments, `@PATH` first for another
build (implies `--raw`); `--js-variant LABEL=ARGS` a phoenix.js row (`benches/js/swarm.mjs`'s extra
arguments: `16` sends the due moves every 16 ms, batched, as the Rust swarm does by default).
`--no-js` leaves phoenix.js out. 30 s by default: phoenix.js's cost per message falls as node's JIT warms
up (34 µs at 10 sockets over 30 s against 46–63 over 10 s, BENCHMARKS.md), and small swarms need the length to
steady their totals. `--raw` adds the leanest Rust client we could write doing the same
work (`benches/swarm_raw.rs`: one thread, tungstenite + epoll, no Bevy, no protocol state): the floor
any client pays per message, kernel included.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server():
    port = free_port()
    exe = os.path.join(TARGET, "release", "phoenix_test_server")
    proc = subprocess.Popen([exe, "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"ws://127.0.0.1:{port}/socket"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    sys.exit("the test server did not start")


def run(cmd, cwd=ROOT):
    out = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def steal_ticks():
    with open("/proc/stat") as f:
        return int(f.readline().split()[8])


def user_us_per_message(r):
    """CPU outside the kernel per message: the client's own code (system calls cost both alike)."""
    total = r["client_cpu_us_per_message"]
    sys_s = r.get("client_system_cpu_seconds")
    if sys_s is None or not r.get("client_cpu_seconds"):
        return float("nan")
    return total * (1 - sys_s / r["client_cpu_seconds"])


def received(r):
    """Messages received while pushing (`run_totals`; the joins' presence events left out)."""
    t = r.get("run_totals", r["totals"])
    return t["messages"] + t["replies_ok"] + t["replies_error"] + t["presence"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--rate", type=float, default=5)
    ap.add_argument("--variant", action="append", default=[])
    ap.add_argument("--no-js", action="store_true")
    ap.add_argument("--raw", action="store_true")
    ap.add_argument("--raw-variant", action="append", default=[])
    ap.add_argument("--js-variant", action="append", default=[])
    a = ap.parse_args()
    variants = [("rust", "bevy_phoenix_channels", [])]
    for v in a.variant:
        label, _, args = v.partition("=")
        variants.append((f"rust:{label}", f"bevy_phoenix_channels, {label}", args.split()))
    raw_variants = {}
    for v in a.raw_variant:
        label, _, args = v.partition("=")
        raw_variants[f"raw:{label}"] = (f"raw Rust, {label}", args.split())
    a.raw = a.raw or bool(raw_variants)
    js_variants = {}
    for v in a.js_variant:
        label, _, args = v.partition("=")
        js_variants[f"js:{label}"] = (f"phoenix.js 1.8.16, {label}", args.split())
    clients = (
        [k for k, _, _ in variants] + (["raw"] if a.raw else []) + list(raw_variants)
        + ([] if a.no_js else ["js"] + list(js_variants))
    )
    labels = (
        {k: label for k, label, _ in variants}
        | {k: label for k, (label, _) in raw_variants.items()}
        | {k: label for k, (label, _) in js_variants.items()}
    ) | {
        "js": "phoenix.js 1.8.16",
        "raw": "raw Rust (tungstenite + epoll, no Bevy)",
    }
    extra = {k: args for k, _, args in variants}
    sizes = [int(s) for s in a.sizes.split(",")]

    subprocess.run(
        ["cargo", "build", "--release", "--example", "swarm", "-p", "bevy_phoenix_channels"], cwd=ROOT, check=True
    )
    subprocess.run(["cargo", "build", "--release", "-p", "phoenix_test_server"], cwd=ROOT, check=True)
    js = os.path.join(ROOT, "benches", "js")
    if not os.path.isdir(os.path.join(js, "node_modules", "phoenix")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], cwd=js, check=True)
    swarm = os.path.join(TARGET, "release", "examples", "swarm")
    raw_exe = None
    if a.raw:
        out = subprocess.run(
            ["cargo", "bench", "--bench", "swarm_raw", "--no-run", "--message-format=json", "-p", "bevy_phoenix_channels"],
            cwd=ROOT, check=True, capture_output=True, text=True,
        ).stdout
        for line in out.splitlines():
            msg = json.loads(line)
            if msg.get("reason") == "compiler-artifact" and msg.get("target", {}).get("name") == "swarm_raw":
                raw_exe = msg.get("executable") or raw_exe
        if not raw_exe:
            sys.exit("swarm_raw did not build")

    results = {n: {c: [] for c in clients} for n in sizes}
    steal0, load0 = steal_ticks(), os.getloadavg()[0]
    for r in range(a.runs):
        for n in sizes:
            rooms = max(1, -(-n // 10))
            for client in clients:
                proc, url = start_server()
                try:
                    if client.startswith("raw"):
                        exe, args = raw_exe, list(raw_variants[client][1]) if client in raw_variants else []
                        if args and args[0].startswith("@"):
                            exe, args = args[0][1:], args[1:]
                        res = run([exe, "--bots", str(n), "--rooms", str(rooms), "--rate", str(a.rate),
                                   "--seconds", str(a.seconds), "--url", url, "--json"] + args)
                    elif not client.startswith("js"):
                        args = extra[client]
                        exe = swarm
                        if args and args[0].startswith("@"):
                            exe, args = args[0][1:], args[1:]
                        res = run([exe, "--bots", str(n), "--rate", str(a.rate), "--seconds", str(a.seconds),
                                   "--url", url, "--json"] + args)
                    else:
                        extra_js = js_variants[client][1] if client in js_variants else []
                        res = run(["node", "swarm.mjs", url, str(n), str(rooms), str(a.rate), str(a.seconds)]
                                  + extra_js, cwd=js)
                finally:
                    proc.kill()
                    proc.wait()
                results[n][client].append(res)
                print(f"run {r + 1} n={n} {client}: cpu {res['client_cpu_us_per_message']:.2f} µs/msg, "
                      f"rss {res['rss_per_socket_bytes'] / 1024:.1f} KiB/socket, "
                      f"{received(res) / a.seconds:.0f} msgs/s", file=sys.stderr)

    print(f"steal: {steal_ticks() - steal0} ticks; load average {load0:.2f} before, {os.getloadavg()[0]:.2f} after")
    med = statistics.median
    print("| sockets | client | CPU µs/message | × Rust | of which user space | × Rust | RSS KiB/socket | × Rust | received/s "
          "| reply ms p50 / p99 | idle frame µs (p50) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for n in sizes:
        rows = {}
        for client in clients:
            rs = results[n][client]
            rows[client] = (
                med([x["client_cpu_us_per_message"] for x in rs]),
                med([user_us_per_message(x) for x in rs]),
                med([x["rss_per_socket_bytes"] / 1024 for x in rs]),
                med([received(x) / a.seconds for x in rs]),
                med([x["idle_frame_p50_us"] for x in rs]) if client.startswith("rust") else None,
                (med([x["reply_latency"]["p50_us"] / 1000 for x in rs]),
                 med([x["reply_latency"]["p99_us"] / 1000 for x in rs]))
                if all("reply_latency" in x for x in rs) else None,
            )
        base = rows["rust"]
        for client in clients:
            label = labels[client]
            cpu, user, rss, rx, idle, reply = rows[client]
            print(f"| {n} | {label} | {cpu:.2f} | {cpu / base[0]:.2f} | {user:.2f} | {user / base[1]:.2f} | "
                  f"{rss:.1f} | {rss / base[2]:.2f} | {rx:.0f} | "
                  f"{'' if reply is None else f'{reply[0]:.2f} / {reply[1]:.2f}'} | "
                  f"{'' if idle is None else f'{idle:.1f}'} |")

    if a.raw and not a.no_js:
        print()
        for n in sizes:
            med_cpu = {c: med([x["client_cpu_us_per_message"] for x in results[n][c]]) for c in ("js", "raw", "rust")}
            med_user = {c: med([user_us_per_message(x) for x in results[n][c]]) for c in ("js", "raw", "rust")}
            print(f"{n} sockets: phoenix.js ÷ raw Rust {med_cpu['js'] / med_cpu['raw']:.2f}× in total, "
                  f"{med_user['js'] / med_user['raw']:.2f}× in user space; "
                  f"bevy_phoenix_channels ÷ raw Rust {med_cpu['rust'] / med_cpu['raw']:.2f}× in total, "
                  f"{med_user['rust'] / med_user['raw']:.2f}× in user space")

    if len(sizes) > 1:
        lo, hi = min(sizes), max(sizes)
        print()
        print(f"Marginal resident memory per socket, {lo} -> {hi} sockets (medians):")
        for client in clients:
            r_lo = med([x["rss_per_socket_bytes"] for x in results[lo][client]]) * lo
            r_hi = med([x["rss_per_socket_bytes"] for x in results[hi][client]]) * hi
            print(f"  {labels[client]}: {(r_hi - r_lo) / (hi - lo) / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
