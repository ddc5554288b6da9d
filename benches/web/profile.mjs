// Where the main thread's time goes in one burst, per client: V8's sampling CPU profiler (CDP
// Profiler domain), self time summed per function (wasm functions by their name-section names).
// Run after benches/web/run.mjs has built the page (it reuses $CARGO_TARGET_DIR/web_bench_dist):
//
//   node benches/web/profile.mjs [raf|event|wraf|wevent|js] [N] [burst|rtt]   (wraf, wevent: the worker transport)
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { createReadStream, existsSync, statSync } from "node:fs";
import { dirname, join, extname, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const targetDir = process.env.CARGO_TARGET_DIR || join(root, "target");
const dist = join(targetDir, "web_bench_dist");
const [client = "raf", n = "100000", what = "burst"] = process.argv.slice(2);

const server = spawn(join(targetDir, "release/phoenix_test_server"), ["--port", "0"], { stdio: ["ignore", "pipe", "inherit"] });
const wsUrl = await new Promise((res) => {
  let buf = "";
  server.stdout.on("data", (d) => {
    const m = /ws:\/\/\S+/.exec((buf += d));
    if (m) res(m[0]);
  });
});
const types = { ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm" };
const http = createServer((req, res) => {
  const name = new URL(req.url, "http://x").pathname.replace(/^\/+/, "") || "index.html";
  const path = join(dist, name);
  if (name.includes("..") || !existsSync(path) || !statSync(path).isFile()) return res.writeHead(404).end();
  res.writeHead(200, { "Content-Type": types[extname(path)] || "application/octet-stream",
    "Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp" });
  createReadStream(path).pipe(res);
});
await new Promise((r) => http.listen(0, "127.0.0.1", r));
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking"] });
try {
  const page = await browser.newPage();
  await page.goto(`http://127.0.0.1:${http.address().port}/index.html?ws=${encodeURIComponent(wsUrl)}`);
  await page.waitForFunction(() => window.benchReady === true);
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Profiler.enable");
  await cdp.send("Profiler.setSamplingInterval", { interval: 100 });
  await page.evaluate(([c, n, w]) => (w === "rtt" ? window.bench.prepare("rtt", c, 0, n) : window.bench.prepare("burst", c, n, 100)),
    [client, Number(n), what]);
  await cdp.send("Profiler.start");
  const r = await page.evaluate(() => window.bench.run());
  await page.evaluate(() => window.bench.close());
  const { profile } = await cdp.send("Profiler.stop");
  const byId = new Map(profile.nodes.map((x) => [x.id, x]));
  const self = new Map();
  const dt = profile.timeDeltas;
  for (let i = 0; i < profile.samples.length; i++) {
    const node = byId.get(profile.samples[i]);
    const f = node.callFrame;
    const key = `${f.functionName || "(anonymous)"} ${f.url.split("/").pop()}:${f.lineNumber}`;
    self.set(key, (self.get(key) || 0) + (dt[i] || 0));
  }
  // PROFILE_CALLERS=name,name: the call stacks (3 callers up) of the samples in those functions.
  const parent = new Map();
  for (const x of profile.nodes) for (const c of x.children || []) parent.set(c, x.id);
  const wanted = (process.env.PROFILE_CALLERS || "").split(",").filter(Boolean);
  const stacks = new Map();
  for (let i = 0; i < profile.samples.length; i++) {
    let id = profile.samples[i];
    const fname = byId.get(id).callFrame.functionName;
    if (!wanted.some((w) => fname.includes(w))) continue;
    const chain = [];
    for (let k = 0; k < 4 && id !== undefined; k++, id = parent.get(id)) chain.push(byId.get(id).callFrame.functionName.slice(0, 90));
    const key = chain.join(" <- ");
    stacks.set(key, (stacks.get(key) || 0) + (dt[i] || 0));
  }
  for (const [k, v] of [...stacks.entries()].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`${(v / 1000).toFixed(1)} ms  ${k}`);
  // PROFILE_INCLUSIVE=text: inclusive time of the functions whose name contains text.
  const incl = new Map();
  const sub = process.env.PROFILE_INCLUSIVE;
  if (sub) {
    for (let i = 0; i < profile.samples.length; i++) {
      const seen = new Set();
      for (let id = profile.samples[i]; id !== undefined; id = parent.get(id)) {
        const f = byId.get(id).callFrame.functionName;
        if (f.includes(sub) && !seen.has(f)) {
          seen.add(f);
          incl.set(f, (incl.get(f) || 0) + (dt[i] || 0));
        }
      }
    }
    for (const [k, v] of [...incl.entries()].sort((a, b) => b[1] - a[1]).slice(0, 40)) console.log(`incl ${(v / 1000).toFixed(1).padStart(8)} ms  ${k.slice(0, 150)}`);
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  const { lat_us, ...show } = r;
  console.log(JSON.stringify(show));
  console.log(`self time per function (µs per message or round trip), ${client}:`);
  for (const [k, v] of [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 30)) {
    console.log(`${(v / r.n).toFixed(3).padStart(8)}  ${((100 * v) / total).toFixed(1).padStart(5)} %  ${k}`);
  }
} finally {
  await browser.close();
  http.close();
  server.kill();
}
