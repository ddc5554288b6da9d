// Phoenix Arena in headless Chromium (Debian's /usr/bin/chromium through playwright-core; no
// browser download). The embedded server serves the web build (page, wasm, assets) on the same
// port as its socket; the page's wasm game joins the room; a synthesized key press moves it; a
// native headless client (`arena --observe`) sees the player arrive, move and chat.
//
//   node browser.mjs <arena binary> <dist dir> [screenshot.png]
//
// Last line: "N passed, M failed"; exit status 1 when anything failed.
import { spawn } from "node:child_process";
import net from "node:net";
import { chromium } from "playwright-core";

const [bin, dist, shot] = process.argv.slice(2);
if (!bin || !dist) {
  console.error("usage: node browser.mjs <arena binary> <dist dir> [screenshot.png]");
  process.exit(2);
}
let passed = 0;
let failed = 0;
const check = (name, ok, detail = "") => {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? "ok  " : "FAIL"} ${name}${detail ? ` (${detail})` : ""}`);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const freePort = () =>
  new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });

// A child process whose stdout lines we keep.
function run(name, args) {
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] });
  const lines = [];
  let rest = "";
  child.stdout.on("data", (d) => {
    const parts = (rest + d).split("\n");
    rest = parts.pop();
    for (const l of parts) lines.push(l);
  });
  let err = "";
  child.stderr.on("data", (d) => (err = (err + d).slice(-4000)));
  return { name, child, lines, stderr: () => err };
}

async function waitFor(proc, what, pred, ms) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    for (const l of proc.lines) {
      const m = pred(l);
      if (m) return m;
    }
    if (proc.child.exitCode !== null) break;
    await sleep(50);
  }
  console.log(`-- ${proc.name} never printed: ${what}; its last lines:`);
  console.log(proc.lines.slice(-15).join("\n"));
  console.log(proc.stderr());
  return null;
}

const PLAYER = /^PLAYER (\S+) "(.*)" (-?[\d.]+) (-?[\d.]+)$/;

const port = await freePort();
const url = `http://127.0.0.1:${port}/`;
const server = run("server", ["--server", "--web-dir", dist, "--port", String(port)]);
let observer = null;
let browser = null;
try {
  const up = await waitFor(server, "started", (l) => l.includes("started the embedded arena server"), 60_000);
  check("the embedded server starts with the web build", !!up);
  if (!up) throw new Error("no server");

  observer = run("observer", ["--observe", "--no-host", "--name", "Watcher", "--url", `ws://127.0.0.1:${port}/socket`]);
  check("the native observer joins", !!(await waitFor(observer, "STATUS Joined", (l) => l === "STATUS Joined", 60_000)));

  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    headless: true,
    args: [
      "--no-sandbox", "--disable-gpu-sandbox", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      // WebGL2 on the CPU (SwiftShader): no GPU here.
      "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
    ],
  });
  const page = await browser.newPage({ viewport: { width: 1280, height: 820 } });
  const consoleLines = [];
  page.on("console", (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => consoleLines.push(`pageerror: ${e.message}`));
  const external = [];
  page.on("request", (r) => {
    // blob: is the transport's keepalive worker, made in the page.
    const u = r.url();
    if (![`http://127.0.0.1:${port}/`, `ws://127.0.0.1:${port}/`, "blob:", "data:"].some((p) => u.startsWith(p))) external.push(u);
  });

  const res = await page.goto(url);
  check("GET / serves the page", res?.status() === 200 && (res.headers()["content-type"] ?? "").startsWith("text/html"), `${res?.status()} ${res?.headers()["content-type"]}`);
  const wasm = await page.request.get(`${url}arena_bg.wasm`);
  check("the wasm is served as application/wasm", wasm.status() === 200 && wasm.headers()["content-type"] === "application/wasm", `${wasm.status()} ${wasm.headers()["content-type"]}`);

  // The browser's player: the first PLAYER the observer hears that is not itself.
  const joined = await waitFor(observer, "a browser player", (l) => {
    const m = PLAYER.exec(l);
    return m && m[2] !== "Watcher" ? { id: m[1], name: m[2], x: +m[3], y: +m[4] } : null;
  }, 180_000);
  check("the wasm game joins the room (the native client sees it in presence)", !!joined, joined ? `${joined.name} at ${joined.x}, ${joined.y}` : "");
  if (!joined) throw new Error("the page never joined");
  const announced = await waitFor(observer, "the join notice", (l) => l === `NOTICE "${joined.name} joined"`, 10_000);
  check("the native client announces the browser player", !!announced);

  // Move: hold an arrow key; the native client must see the player travel.
  await page.click("#arena");
  const key = joined.x < 600 ? "ArrowRight" : "ArrowLeft";
  const sign = key === "ArrowRight" ? 1 : -1;
  // Held until the native client has seen it travel 100 units: headless Chromium renders
  // WebGL on the CPU at a few frames a second, so how far 1 s of holding goes varies.
  await page.keyboard.down(key);
  const moved = await waitFor(observer, "the browser player moved", (l) => {
    const m = PLAYER.exec(l);
    return m && m[1] === joined.id && sign * (+m[3] - joined.x) > 100 ? +m[3] : null;
  }, 60_000);
  await page.keyboard.up(key);
  check(`a synthesized ${key} moves the player (seen by the native client)`, moved !== null, moved !== null ? `x ${joined.x} -> ${moved}` : "");

  // Chat: Enter, text, Enter.
  await page.keyboard.press("Enter");
  await page.keyboard.type("hello from the browser");
  await page.keyboard.press("Enter");
  const chat = await waitFor(observer, "the chat line", (l) => l === `CHAT "${joined.name}" "hello from the browser"`, 30_000);
  check("chat typed in the page reaches the native client", !!chat);

  // A second tab is a second player (its own id: the page seeds its random numbers).
  const page2 = await browser.newPage({ viewport: { width: 800, height: 600 } });
  await page2.goto(url);
  const second = await waitFor(observer, "a second browser player", (l) => {
    const m = PLAYER.exec(l);
    return m && m[2] !== "Watcher" && m[1] !== joined.id ? m[1] : null;
  }, 180_000);
  check("a second tab joins as a second player", !!second, second ? `${joined.id} and ${second}` : "");
  await page2.close();

  await sleep(1000);
  if (shot) {
    await page.screenshot({ path: shot });
    console.log(`screenshot: ${shot}`);
  }
  check("the page loaded nothing from outside this server", external.length === 0, external.slice(0, 3).join(", "));
  const errors = consoleLines.filter((l) => l.startsWith("pageerror") && !l.includes("Using exceptions for control flow"));
  check("no page errors", errors.length === 0, errors.slice(0, 3).join(" | "));
  if (failed) console.log(consoleLines.slice(-30).join("\n"));
} catch (e) {
  failed++;
  console.log(`FAIL ${e.message}`);
} finally {
  await browser?.close().catch(() => {});
  observer?.child.kill();
  server.child.kill();
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
