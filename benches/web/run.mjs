// Browser bench: our wasm plugin vs phoenix.js 1.8.16 in one headless Chromium page, against the
// same phoenix_test_server (release), runs interleaved. One command, from anywhere:
//
//   node benches/web/run.mjs [--runs 5] [--burst 100000] [--rtt 2000] [--raf-rtt 120] [--trace-dir DIR]
//
// Steps: `cargo build --release --example web_bench --target wasm32-unknown-unknown` (benches/web/app.rs),
// wasm-bindgen (the CLI must match Cargo.lock's wasm-bindgen), `cargo build --release -p
// phoenix_test_server`, `npm ci` here if node_modules is missing, the server on a free loopback port, a
// tiny static server for the page (with COOP/COEP headers: a cross-origin-isolated page gets 5 µs
// performance.now() instead of 100 µs), Debian's /usr/bin/chromium through playwright-core (no
// browser download). CARGO_TARGET_DIR is honoured.
//
// Clients, each on its own new connection per run: "ours (raf)" = the app updated once per
// requestAnimationFrame (a browser game), "ours (bot)" = updated once per event-loop turn (a headless
// bot / as fast as the page can), "phoenix.js" = callbacks only. Measured per run: burst (server
// pushes N `tick`s with 100-byte pads: `burst {"n":N,"size":100}` on `echo:*`, as benches/e2e_burst.rs)
// and sequential echo round trips (`echo {"i":I,"body":"hello"}`, one in flight, as benches/e2e_rtt.rs).
// Main-thread time: a Chromium trace (CDP Tracing, devtools.timeline) per measurement; the sum of the
// renderer main thread's top-level tasks (RunTask) inside the page's performance marks
// bench:start..bench:end. That counts everything the page's main thread did in the window for either
// client: WebSocket message events, the clients' JS/wasm callbacks, rAF frames, GC, timers.
// Prints a markdown table of medians over the runs and the ratios ours / phoenix.js.
import { spawn, spawnSync } from "node:child_process";
import { createServer } from "node:http";
import { createReadStream, existsSync, mkdirSync, readFileSync, statSync, writeFileSync, copyFileSync } from "node:fs";
import { dirname, join, extname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import os from "node:os";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : dflt;
};
const RUNS = Number(opt("runs", 5));
const BURST = Number(opt("burst", 100_000));
const SIZE = 100;
const RTT = Number(opt("rtt", 2000));
const RTT_WARMUP = 200;
// A frame-driven round trip takes one or two frames (16.7 ms each at 60 Hz): fewer of them.
const RAF_RTT = Number(opt("raf-rtt", 120));
const RAF_RTT_WARMUP = 10;
const TRACE_DIR = opt("trace-dir", null);
const CATEGORIES = opt("categories", "toplevel,blink.user_timing").split(",");
const TRACE = args.includes("--trace");
const CLIENTS = opt("clients", "raf,event,js").split(",");
const targetDir = process.env.CARGO_TARGET_DIR || join(root, "target");

function sh(cmd, argv, env = {}) {
  console.error(`$ ${cmd} ${argv.join(" ")}`);
  const r = spawnSync(cmd, argv, { stdio: ["ignore", "inherit", "inherit"], cwd: root, env: { ...process.env, ...env } });
  if (r.status !== 0) throw new Error(`${cmd} failed (${r.status})`);
}

// ----- build ----------------------------------------------------------------------------------
const lock = readFileSync(join(root, "Cargo.lock"), "utf8");
const want = /name = "wasm-bindgen"\nversion = "([^"]+)"/.exec(lock)[1];
const have = (spawnSync("wasm-bindgen", ["--version"], { encoding: "utf8" }).stdout || "").split(" ")[1]?.trim();
if (have !== want) {
  console.error(`wasm-bindgen CLI ${have || "missing"}, Cargo.lock has ${want}: cargo install wasm-bindgen-cli --version ${want}`);
  process.exit(2);
}
sh("cargo", ["build", "--release", "--example", "web_bench", "--target", "wasm32-unknown-unknown"]);
sh("cargo", ["build", "--release", "-p", "phoenix_test_server"]);
const dist = join(targetDir, "web_bench_dist");
mkdirSync(dist, { recursive: true });
sh("wasm-bindgen", ["--target", "web", "--no-typescript", "--out-dir", dist, "--out-name", "web_bench",
  join(targetDir, "wasm32-unknown-unknown/release/examples/web_bench.wasm")]);
for (const f of ["index.html", "bench.mjs"]) copyFileSync(join(here, "page", f), join(dist, f));
if (!existsSync(join(here, "node_modules/phoenix")) || !existsSync(join(here, "node_modules/playwright-core"))) {
  const r = spawnSync("npm", ["ci", "--no-audit", "--no-fund", "--silent"], { cwd: here, stdio: "inherit" });
  if (r.status !== 0) throw new Error("npm ci failed");
}
copyFileSync(join(here, "node_modules/phoenix/priv/static/phoenix.mjs"), join(dist, "phoenix.mjs"));
const { chromium } = await import("playwright-core");

// ----- servers --------------------------------------------------------------------------------
const server = spawn(join(targetDir, "release/phoenix_test_server"), ["--port", "0"], { stdio: ["ignore", "pipe", "inherit"] });
const wsUrl = await new Promise((res, rej) => {
  let buf = "";
  server.stdout.on("data", (d) => {
    buf += d;
    const m = /ws:\/\/\S+/.exec(buf);
    if (m) res(m[0]);
  });
  server.on("exit", (c) => rej(new Error(`phoenix_test_server exited (${c})`)));
});
const types = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm" };
const http = createServer((req, res) => {
  const name = new URL(req.url, "http://x").pathname.replace(/^\/+/, "") || "index.html";
  const path = join(dist, name);
  if (name.includes("..") || !existsSync(path) || !statSync(path).isFile()) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, {
    "Content-Type": types[extname(path)] || "application/octet-stream",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cache-Control": "no-store",
  });
  createReadStream(path).pipe(res);
});
await new Promise((r) => http.listen(0, "127.0.0.1", r));
const pageUrl = `http://127.0.0.1:${http.address().port}/index.html?ws=${encodeURIComponent(wsUrl)}`;

// ----- machine --------------------------------------------------------------------------------
function cpuTimes() {
  const f = readFileSync("/proc/stat", "utf8").split("\n")[0].trim().split(/\s+/).slice(1).map(Number);
  return { total: f.reduce((a, b) => a + b, 0), steal: f[7] || 0 };
}

// ----- trace ----------------------------------------------------------------------------------
// Busy time (µs) of the page's renderer main thread between the marks bench:start and bench:end:
// the top-level tasks (RunTask), each clipped to the window.
const RUN_TASK = new Set(["RunTask", "ThreadControllerImpl::RunTask"]);
function mainThreadBusy(buf) {
  const events = JSON.parse(buf.toString("utf8")).traceEvents;
  let start, end, pid, tid;
  for (const e of events) {
    if (e.name === "bench:start" && e.cat.includes("blink.user_timing")) {
      start = e.ts;
      pid = e.pid;
      tid = e.tid;
    } else if (e.name === "bench:end" && e.cat.includes("blink.user_timing")) end = e.ts;
  }
  if (start === undefined || end === undefined) throw new Error("marks not found in the trace");
  // The marks are emitted on the main thread (in Chromium both may carry tid of CrRendererMain).
  const main = events.find((e) => e.ph === "M" && e.name === "thread_name" && e.pid === pid && e.args.name === "CrRendererMain");
  if (main) tid = main.tid;
  let busy = 0;
  let tasks = 0;
  for (const e of events) {
    if (e.pid !== pid || e.tid !== tid || e.ph !== "X" || !RUN_TASK.has(e.name)) continue;
    const a = Math.max(e.ts, start);
    const b = Math.min(e.ts + (e.dur || 0), end);
    if (b > a) {
      busy += b - a;
      tasks++;
    }
  }
  return { busy_us: busy, window_us: end - start, tasks };
}

// ----- run ------------------------------------------------------------------------------------
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync"],
});
const results = {}; // key -> [sample]
let failed = false;
try {
  const page = await browser.newPage();
  page.on("console", (m) => {
    if (m.type() === "error" || m.type() === "warning") console.error(`[page] ${m.text()}`);
  });
  page.on("pageerror", (e) => console.error(`[page error] ${e}`));
  await page.goto(pageUrl);
  await page.waitForFunction(() => window.benchReady === true, null, { timeout: 30_000 });
  const isolated = await page.evaluate(() => window.bench.isolated);
  const rafHz = await page.evaluate(() => window.bench.rafRate(1000));
  console.error(`page: crossOriginIsolated=${isolated}, requestAnimationFrame ${rafHz.toFixed(1)} Hz, server ${wsUrl}`);

  const measure = async (key, fn) => {
    if (TRACE) await browser.startTracing(page, { categories: CATEGORIES });
    let r;
    try {
      r = await page.evaluate(fn.code, fn.arg);
    } finally {
      const buf = TRACE ? await browser.stopTracing() : null;
      if (r && buf) {
        Object.assign(r, mainThreadBusy(buf));
        if (TRACE_DIR) {
          mkdirSync(TRACE_DIR, { recursive: true });
          writeFileSync(join(TRACE_DIR, `${key.replace(" ", "-")}-${(results[key] || []).length}.json`), buf);
        }
      }
    }
    (results[key] ||= []).push(r);
    const { lat_us, ...show } = r;
    console.error(`${key}: ${JSON.stringify(show)}`);
  };
  const burst = (client) => ({ code: ([c, n, s]) => window.bench.burst(c, n, s), arg: [client, BURST, SIZE] });
  const rtt = (client, w, n) => ({ code: ([c, w, n]) => window.bench.rtt(c, w, n), arg: [client, w, n] });

  const cpu0 = cpuTimes();
  const load0 = os.loadavg();
  const t0 = new Date();
  // Interleaved: each run measures every client once, in a rotating order.
  for (let run = 0; run < RUNS; run++) {
    const order = CLIENTS.map((_, i) => CLIENTS[(i + run) % CLIENTS.length]);
    for (const c of order) await measure(`burst ${c}`, burst(c));
    for (const c of order) {
      if (c === "raf") await measure(`rtt ${c}`, rtt(c, RAF_RTT_WARMUP, RAF_RTT));
      else await measure(`rtt ${c}`, rtt(c, RTT_WARMUP, RTT));
    }
  }
  const cpu1 = cpuTimes();
  const steal = (100 * (cpu1.steal - cpu0.steal)) / Math.max(1, cpu1.total - cpu0.total);

  // ----- table --------------------------------------------------------------------------------
  const median = (v) => {
    const s = [...v].sort((a, b) => a - b);
    return s.length ? s[Math.floor(s.length / 2)] : NaN;
  };
  const pct = (v, p) => {
    const s = [...v].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
  };
  const m = (key, f) => median(results[key].map(f));
  const name = {
    raf: "ours, rAF (a game: 60 Hz)",
    event: "ours, on arrival (a bot)",
    spin: "ours, every event-loop turn",
    js: "phoenix.js 1.8.16",
  };
  const x = (a, b) => (b === undefined ? "" : `${(a / b).toFixed(2)}×`);
  const traceCols = TRACE ? " main thread busy µs/msg (trace) | × phoenix.js |" : "";
  const traceSep = TRACE ? "---|---|" : "";

  const b = {};
  for (const c of CLIENTS) {
    const k = `burst ${c}`;
    b[c] = {
      rate: m(k, (r) => r.n / r.secs),
      cb: m(k, (r) => r.cb_us / r.n),
      busy: TRACE ? m(k, (r) => r.busy_us / r.n) : undefined,
      frames: c === "js" ? "" : m(k, (r) => r.frames),
    };
  }
  const js = CLIENTS.includes("js");
  console.log(`\n### Browser burst receive: ${BURST} ticks of ${SIZE}-byte pads, headless Chromium (medians of ${RUNS} interleaved runs)\n`);
  console.log(`| client | msgs/s | × phoenix.js | callback µs/msg | × phoenix.js |${traceCols} app frames |`);
  console.log(`|---|---|---|---|---|${traceSep}---|`);
  for (const c of CLIENTS) {
    const r = b[c];
    const tr = TRACE ? ` ${r.busy.toFixed(2)} | ${x(r.busy, js && b.js.busy)} |` : "";
    console.log(`| ${name[c]} | ${r.rate.toFixed(0)} | ${x(r.rate, js && b.js.rate)} | ${r.cb.toFixed(2)} | ${x(r.cb, js && b.js.cb)} |${tr} ${r.frames} |`);
  }
  const t = {};
  for (const c of CLIENTS) {
    const k = `rtt ${c}`;
    t[c] = {
      p50: m(k, (r) => pct(r.lat_us, 50)),
      p99: m(k, (r) => pct(r.lat_us, 99)),
      rate: m(k, (r) => r.n / r.secs),
      cb: m(k, (r) => r.cb_us / r.n),
      busy: TRACE ? m(k, (r) => r.busy_us / r.n) : undefined,
      n: results[k][0].lat_us.length,
    };
  }
  console.log(`\n### Browser sequential echo round trips (medians of ${RUNS} interleaved runs)\n`);
  console.log(`| client | timed round trips | p50 µs | × phoenix.js | p99 µs | round trips/s | × phoenix.js | callback µs/round trip | × phoenix.js |${traceCols.replace("/msg", "/round trip")}`);
  console.log(`|---|---|---|---|---|---|---|---|---|${traceSep}`);
  for (const c of CLIENTS) {
    const r = t[c];
    const tr = TRACE ? ` ${r.busy.toFixed(1)} | ${x(r.busy, js && t.js.busy)} |` : "";
    console.log(`| ${name[c]} | ${r.n} | ${r.p50.toFixed(0)} | ${x(r.p50, js && t.js.p50)} | ${r.p99.toFixed(0)} | ${r.rate.toFixed(0)} | ${x(r.rate, js && t.js.rate)} | ${r.cb.toFixed(2)} | ${x(r.cb, js && t.js.cb)} |${tr}`);
  }
  const all = (title, k, f) => {
    console.log(title);
    for (const c of CLIENTS) console.log(`  ${name[c]}: ${results[`${k} ${c}`].map(f).join(", ")}`);
  };
  console.log("\nall runs:");
  all("burst msgs/s", "burst", (r) => (r.n / r.secs).toFixed(0));
  all("burst callback µs/msg", "burst", (r) => (r.cb_us / r.n).toFixed(2));
  all("burst callback µs/msg: in WebSocket handlers + in update()", "burst", (r) => `${(r.sock_us / r.n).toFixed(2)} + ${(r.update_us / r.n).toFixed(2)}`);
  if (TRACE) all("burst main thread busy µs/msg (trace)", "burst", (r) => (r.busy_us / r.n).toFixed(2));
  all("round trip p50 µs", "rtt", (r) => pct(r.lat_us, 50).toFixed(0));
  all("round trip callback µs", "rtt", (r) => (r.cb_us / r.n).toFixed(2));
  all("round trip callback µs: in WebSocket handlers + in update()", "rtt", (r) => `${(r.sock_us / r.n).toFixed(2)} + ${(r.update_us / r.n).toFixed(2)}`);
  if (TRACE) all("round trip main thread busy µs (trace)", "rtt", (r) => (r.busy_us / r.n).toFixed(1));
  const load1 = os.loadavg();
  console.log(`\n${t0.toISOString()} to ${new Date().toISOString()}; ${os.cpus().length} cores; load average ${load0.map((v) => v.toFixed(2)).join(" ")} at the start, ${load1.map((v) => v.toFixed(2)).join(" ")} at the end; steal ${steal.toFixed(1)} % over the runs; Chromium ${browser.version()}; crossOriginIsolated ${isolated}; rAF ${rafHz.toFixed(1)} Hz${TRACE ? `; trace categories ${CATEGORIES.join(",")}` : ""}`);
} catch (e) {
  failed = true;
  console.error(e);
} finally {
  await browser.close();
  http.close();
  server.kill();
}
process.exit(failed ? 1 : 0);
