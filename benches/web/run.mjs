// Browser bench: our wasm plugin vs phoenix.js 1.8.16 in one headless Chromium page, against the
// same phoenix_test_server (release), runs interleaved. One command, from anywhere:
//
//   node benches/web/run.mjs [--runs 5] [--burst 100000] [--rtt 2000] [--raf-rtt 120]
//                            [--clients raf,event,wraf,wevent,js] [--trace [--categories C,C] [--trace-dir DIR]]
//
// Steps: `cargo build --release --example web_bench --target wasm32-unknown-unknown` (benches/web/app.rs),
// wasm-bindgen (the CLI must match Cargo.lock's wasm-bindgen), `cargo build --release -p
// phoenix_test_server`, `npm ci` here if node_modules is missing, the server on a free loopback port, a
// tiny static server for the page (with COOP/COEP headers: a cross-origin-isolated page gets 5 µs
// performance.now() instead of 100 µs), Debian's /usr/bin/chromium through playwright-core (no
// browser download). CARGO_TARGET_DIR is honoured.
//
// Clients, each on its own new connection per measurement, all in the same page:
//   "ours, rAF"        the wasm app (benches/web/app.rs: MinimalPlugins + the plugin, no renderer, no
//                      window), update() once per requestAnimationFrame: what a browser game does
//                      (Bevy's winit runner on the web is rAF-driven);
//   "ours, on arrival" update() once per event-loop turn in which a WebSocket event arrived (a
//                      headless bot updating as fast as messages arrive, idle otherwise), plus a
//                      100 ms timer; `--clients raf,event,spin,js` adds "spin", update() on every
//                      event-loop turn (a MessageChannel loop);
//   "ours-worker, rAF" / "ours-worker, on arrival" (wraf, wevent): the same two, with the socket on
//                      the Web Worker transport (WebWorkerConnector: the WebSocket in a dedicated
//                      worker, frames reaching the page in batches; the worker thread's CPU counts
//                      in "all Chromium CPU", not in "main-thread CPU");
//   "phoenix.js"       1.8.16 from npm, its callbacks only.
// Scenarios, as the native benches (benches/e2e_burst.rs, benches/e2e_rtt.rs) on the same server:
// burst = the server pushes N `tick`s with 100-byte pads (`burst {"n":N,"size":100}` on `echo:*`),
// time from the push to the last tick counted; round trips = sequential `echo {"i":I,"body":"hello"}`
// pushes, one in flight, latency from push to reply as each client sees it.
// Main-thread time, the same way for every client:
//   main-thread CPU    CPU time (/proc/PID/task/TID/schedstat, so a preempted thread does not count)
//                      of the page's renderer main thread over the measurement; everything it did:
//                      WebSocket message events, the client's JS/wasm, rAF frames, GC;
//   all Chromium CPU   the same over every Chromium process and thread (network service, browser,
//                      compositor, ...);
//   in callbacks       wall time inside the clients' WebSocket handlers and our update() calls
//                      (performance.now() around each, page cross-origin isolated for 5 µs
//                      resolution; see page/bench.mjs); inflated by preemption on a loaded machine;
//   --trace            also a Chromium trace per measurement (CDP Tracing, categories --categories,
//                      default toplevel): the renderer main thread's RunTask time between the page's
//                      performance marks. Heavy (hundreds of MB per 100k burst): use a small --burst.
// Runs are interleaved (each run measures every client once, the order rotating); the table shows
// medians and ratios ours / phoenix.js, then every run's values, load average and steal.
import { spawn, spawnSync } from "node:child_process";
import { createServer } from "node:http";
import { createReadStream, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync, copyFileSync } from "node:fs";
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
const CLIENTS = opt("clients", "raf,event,wraf,wevent,js").split(",");
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

// ----- Chromium's CPU time, from /proc ---------------------------------------------------------
// Every process below this one (Playwright starts Chromium as our child) except the test server:
// the browser, its network service, GPU and utility processes, and the page's renderer.
// schedstat's first field is nanoseconds on CPU: preemption on a loaded machine does not count.
function readNs(path) {
  try {
    return Number(readFileSync(path, "utf8").split(" ")[0]) || 0;
  } catch {
    return 0;
  }
}
function chromiumCpu() {
  const parent = new Map();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = readFileSync(`/proc/${d}/stat`, "utf8");
      parent.set(Number(d), Number(st.slice(st.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {}
  }
  const mine = new Set([process.pid]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const [pid, pp] of parent) {
      if (!mine.has(pid) && mine.has(pp) && pid !== server.pid) {
        mine.add(pid);
        grew = true;
      }
    }
  }
  mine.delete(process.pid);
  let all = 0;
  const mains = new Map(); // renderer pid -> its main thread's ns
  for (const pid of mine) {
    let tasks = [];
    try {
      tasks = readdirSync(`/proc/${pid}/task`);
    } catch {}
    for (const t of tasks) all += readNs(`/proc/${pid}/task/${t}/schedstat`);
    let cmd = "";
    try {
      cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    } catch {}
    if (cmd.includes("--type=renderer")) mains.set(pid, readNs(`/proc/${pid}/task/${pid}/schedstat`));
  }
  return { all, mains };
}
// The page's renderer is the one whose main thread ran the most in the window.
function cpuDelta(a, b) {
  let main = 0;
  for (const [pid, ns] of b.mains) main = Math.max(main, ns - (a.mains.get(pid) ?? ns));
  return { main_cpu_us: main / 1000, chromium_cpu_us: (b.all - a.all) / 1000, renderers: b.mains.size };
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

  // One measurement: prepare (connect, join), CPU snapshot, run, CPU snapshot, close.
  const measure = async (key, kind, client, a, b) => {
    await page.evaluate(([k, c, a, b]) => window.bench.prepare(k, c, a, b), [kind, client, a, b]);
    if (TRACE) await browser.startTracing(page, { categories: CATEGORIES });
    let r;
    try {
      const c0 = chromiumCpu();
      r = await page.evaluate(() => window.bench.run());
      const c1 = chromiumCpu();
      Object.assign(r, cpuDelta(c0, c1));
    } finally {
      const buf = TRACE ? await browser.stopTracing() : null;
      if (r && buf) {
        Object.assign(r, mainThreadBusy(buf));
        if (TRACE_DIR) {
          mkdirSync(TRACE_DIR, { recursive: true });
          writeFileSync(join(TRACE_DIR, `${key.replace(" ", "-")}-${(results[key] || []).length}.json`), buf);
        }
      }
      await page.evaluate(() => window.bench.close());
    }
    (results[key] ||= []).push(r);
    const { lat_us, ...show } = r;
    console.error(`${key}: ${JSON.stringify(show)}`);
  };
  const burst = (c) => measure(`burst ${c}`, "burst", c, BURST, SIZE);
  const rtt = (c, w, n) => measure(`rtt ${c}`, "rtt", c, w, n);

  const cpu0 = cpuTimes();
  const load0 = os.loadavg();
  const t0 = new Date();
  // Interleaved: each run measures every client once, in a rotating order.
  for (let run = 0; run < RUNS; run++) {
    const order = CLIENTS.map((_, i) => CLIENTS[(i + run) % CLIENTS.length]);
    for (const c of order) await burst(c);
    for (const c of order) {
      if (c.endsWith("raf")) await rtt(c, RAF_RTT_WARMUP, RAF_RTT);
      else await rtt(c, RTT_WARMUP, RTT);
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
    wraf: "ours-worker, rAF (a game: 60 Hz)",
    wevent: "ours-worker, on arrival (a bot)",
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
      main: m(k, (r) => r.main_cpu_us / r.n),
      all: m(k, (r) => r.chromium_cpu_us / r.n),
      cb: m(k, (r) => r.cb_us / r.n),
      busy: TRACE ? m(k, (r) => r.busy_us / r.n) : undefined,
      frames: c === "js" ? "" : m(k, (r) => r.frames),
    };
  }
  const js = CLIENTS.includes("js");
  console.log(`\n### Browser burst receive: ${BURST} ticks of ${SIZE}-byte pads, headless Chromium (medians of ${RUNS} interleaved runs)\n`);
  console.log(`| client | msgs/s | × phoenix.js | main-thread CPU µs/msg | × phoenix.js | all Chromium CPU µs/msg | × phoenix.js | in callbacks µs/msg | × phoenix.js |${traceCols} app frames |`);
  console.log(`|---|---|---|---|---|---|---|---|---|${traceSep}---|`);
  for (const c of CLIENTS) {
    const r = b[c];
    const tr = TRACE ? ` ${r.busy.toFixed(2)} | ${x(r.busy, js && b.js.busy)} |` : "";
    console.log(`| ${name[c]} | ${r.rate.toFixed(0)} | ${x(r.rate, js && b.js.rate)} | ${r.main.toFixed(2)} | ${x(r.main, js && b.js.main)} | ${r.all.toFixed(2)} | ${x(r.all, js && b.js.all)} | ${r.cb.toFixed(2)} | ${x(r.cb, js && b.js.cb)} |${tr} ${r.frames} |`);
  }
  const t = {};
  for (const c of CLIENTS) {
    const k = `rtt ${c}`;
    t[c] = {
      p50: m(k, (r) => pct(r.lat_us, 50)),
      p99: m(k, (r) => pct(r.lat_us, 99)),
      rate: m(k, (r) => r.n / r.secs),
      main: m(k, (r) => r.main_cpu_us / r.n),
      all: m(k, (r) => r.chromium_cpu_us / r.n),
      cb: m(k, (r) => r.cb_us / r.n),
      busy: TRACE ? m(k, (r) => r.busy_us / r.n) : undefined,
      n: results[k][0].lat_us.length,
    };
  }
  console.log(`\n### Browser sequential echo round trips (medians of ${RUNS} interleaved runs)\n`);
  console.log(`| client | timed round trips | p50 µs | × phoenix.js | p99 µs | round trips/s | × phoenix.js | main-thread CPU µs/round trip | × phoenix.js | all Chromium CPU µs/round trip | × phoenix.js | in callbacks µs/round trip | × phoenix.js |${traceCols.replace("/msg", "/round trip")}`);
  console.log(`|---|---|---|---|---|---|---|---|---|---|---|---|---|${traceSep}`);
  for (const c of CLIENTS) {
    const r = t[c];
    const tr = TRACE ? ` ${r.busy.toFixed(1)} | ${x(r.busy, js && t.js.busy)} |` : "";
    console.log(`| ${name[c]} | ${r.n} | ${r.p50.toFixed(0)} | ${x(r.p50, js && t.js.p50)} | ${r.p99.toFixed(0)} | ${r.rate.toFixed(0)} | ${x(r.rate, js && t.js.rate)} | ${r.main.toFixed(1)} | ${x(r.main, js && t.js.main)} | ${r.all.toFixed(1)} | ${x(r.all, js && t.js.all)} | ${r.cb.toFixed(1)} | ${x(r.cb, js && t.js.cb)} |${tr}`);
  }
  const all = (title, k, f) => {
    console.log(title);
    for (const c of CLIENTS) console.log(`  ${name[c]}: ${results[`${k} ${c}`].map(f).join(", ")}`);
  };
  console.log("\nall runs:");
  all("burst msgs/s", "burst", (r) => (r.n / r.secs).toFixed(0));
  all("burst main-thread CPU µs/msg", "burst", (r) => (r.main_cpu_us / r.n).toFixed(2));
  all("burst all Chromium CPU µs/msg", "burst", (r) => (r.chromium_cpu_us / r.n).toFixed(2));
  all("burst in callbacks µs/msg: WebSocket handlers + update()", "burst", (r) => `${(r.sock_us / r.n).toFixed(2)} + ${(r.update_us / r.n).toFixed(2)}`);
  if (TRACE) all("burst main thread busy µs/msg (trace)", "burst", (r) => (r.busy_us / r.n).toFixed(2));
  all("round trip p50 µs", "rtt", (r) => pct(r.lat_us, 50).toFixed(0));
  all("round trip main-thread CPU µs", "rtt", (r) => (r.main_cpu_us / r.n).toFixed(1));
  all("round trip all Chromium CPU µs", "rtt", (r) => (r.chromium_cpu_us / r.n).toFixed(1));
  all("round trip in callbacks µs: WebSocket handlers + update() (of which WebSocket.send)", "rtt", (r) => `${(r.sock_us / r.n).toFixed(1)} + ${(r.update_us / r.n).toFixed(1)} (${(r.send_us / r.n).toFixed(1)})`);
  if (TRACE) all("round trip main thread busy µs (trace)", "rtt", (r) => (r.busy_us / r.n).toFixed(1));
  console.log(`renderer processes seen: ${[...new Set(Object.values(results).flat().map((r) => r.renderers))].join(", ")}`);
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
