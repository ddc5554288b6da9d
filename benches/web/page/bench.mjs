// The page side of the browser bench (benches/web/run.mjs drives it through `window.bench`).
// Both clients run in this one page, one after the other, against the same server:
// - ours: the wasm app (benches/web/app.rs), its `update()` called
//   - "raf": once per requestAnimationFrame (what a browser game's runner does: 60 Hz here);
//   - "event": once per event-loop turn in which a WebSocket event arrived, plus a 100 ms timer
//     (a headless bot that updates as fast as messages arrive and sleeps otherwise);
//   - "spin": once per event-loop turn, always (a MessageChannel loop: as fast as the page can);
//   - "wraf", "wevent": as "raf" and "event", with the socket on the Web Worker transport
//     (`WebWorkerConnector`): the WebSocket lives in a worker and frames reach the page in
//     batches, as the worker's `message` events (timed and woken on like WebSocket events: the
//     page's `Worker` is replaced by a subclass the same way);
// - "js": phoenix.js 1.8.16 (node_modules/phoenix/priv/static/phoenix.mjs), callbacks only.
//
// Callback time, the same way for every client: `window.WebSocket` is replaced by a subclass
// whose onopen/onmessage/onclose/onerror setters wrap the client's handler with
// performance.now() (the page is cross-origin isolated: 5 µs resolution, jittered, so sums over
// many calls are unbiased); our `update()` calls are timed the same way. Both clients set their
// handlers through these properties (wasm-bindgen's web-sys glue and phoenix.js's Connection).
// The time inside WebSocket.send (called from either) is also summed, as a part of that.
// Each measurement is also bracketed by performance.mark("bench:start"/"bench:end"), which the
// runner finds in a Chromium trace (with --trace) to sum all the main thread's busy time.
import init, { BenchApp } from "./web_bench.js";
import { Socket } from "./phoenix.mjs";

const params = new URLSearchParams(location.search);
const WS = params.get("ws"); // ws://127.0.0.1:PORT/socket
let seq = 0;
const topic = (p) => `echo:web-${p}-${Date.now()}-${seq++}`;

// ----- callback time and wake-ups ---------------------------------------------------------------
let sockMs = 0; // time inside the clients' WebSocket handlers
let updMs = 0; // time inside our update() calls
let cbCalls = 0;
let wake = null; // the "event" driver's hook, called after each WebSocket event
const NativeWebSocket = window.WebSocket;
function timed(f, self) {
  return (e) => {
    const t = performance.now();
    try {
      f.call(self, e);
      if (wake) wake();
    } finally {
      sockMs += performance.now() - t;
      cbCalls++;
    }
  };
}
let sendMs = 0; // time inside WebSocket.send (part of the above)
class TimedWebSocket extends NativeWebSocket {
  send(data) {
    const t = performance.now();
    try {
      return super.send(data);
    } finally {
      sendMs += performance.now() - t;
    }
  }
}
for (const name of ["onopen", "onmessage", "onclose", "onerror"]) {
  const d = Object.getOwnPropertyDescriptor(NativeWebSocket.prototype, name);
  Object.defineProperty(TimedWebSocket.prototype, name, {
    configurable: true,
    get() {
      return d.get.call(this);
    },
    set(f) {
      d.set.call(this, typeof f === "function" ? timed(f, this) : f);
    },
  });
}
window.WebSocket = TimedWebSocket;
// The worker transport's batches arrive as Worker `message` events: timed and woken on alike.
const NativeWorker = window.Worker;
class TimedWorker extends NativeWorker {}
for (const name of ["onmessage", "onerror"]) {
  const d = Object.getOwnPropertyDescriptor(NativeWorker.prototype, name);
  Object.defineProperty(TimedWorker.prototype, name, {
    configurable: true,
    get() {
      return d.get.call(this);
    },
    set(f) {
      d.set.call(this, typeof f === "function" ? timed(f, this) : f);
    },
  });
}
window.Worker = TimedWorker;

function update(app) {
  const t = performance.now();
  try {
    app.update();
  } finally {
    updMs += performance.now() - t;
  }
}

// ----- drivers: call step() (one frame) until it returns true ------------------------------------
function rafLoop(step) {
  return new Promise((resolve, reject) => {
    const frame = () => {
      try {
        if (step()) resolve();
        else requestAnimationFrame(frame);
      } catch (e) {
        reject(e);
      }
    };
    requestAnimationFrame(frame);
  });
}

// A MessageChannel message is a task (no 4 ms clamp as with nested setTimeout), so WebSocket
// message tasks run between frames.
const mc = new MessageChannel();
function spinLoop(step) {
  return new Promise((resolve, reject) => {
    mc.port1.onmessage = () => {
      try {
        if (step()) resolve();
        else mc.port2.postMessage(0);
      } catch (e) {
        reject(e);
      }
    };
    mc.port2.postMessage(0);
  });
}

// One frame per event-loop turn in which a WebSocket event arrived (coalesced), and one every
// 100 ms (a game's timers: heartbeats, timeouts). The first frame runs at once.
function eventLoop(step) {
  return new Promise((resolve, reject) => {
    let scheduled = false;
    let timer = null;
    const finish = (f, v) => {
      wake = null;
      clearInterval(timer);
      mc.port1.onmessage = null;
      f(v);
    };
    const frame = () => {
      scheduled = false;
      try {
        if (step()) finish(resolve);
      } catch (e) {
        finish(reject, e);
      }
    };
    const schedule = () => {
      if (!scheduled) {
        scheduled = true;
        mc.port2.postMessage(0);
      }
    };
    mc.port1.onmessage = frame;
    wake = schedule;
    timer = setInterval(schedule, 100);
    schedule();
  });
}

const loops = { raf: rafLoop, spin: spinLoop, event: eventLoop, wraf: rafLoop, wevent: eventLoop };

function deadline(secs, what) {
  const end = performance.now() + secs * 1000;
  return () => {
    if (performance.now() > end) throw new Error(`timed out: ${what}`);
  };
}

async function ourApp(driver, prefix) {
  const app = new BenchApp(WS, topic(prefix), driver.startsWith("w"));
  const check = deadline(15, "plugin join");
  await loops[driver](() => {
    check();
    update(app);
    return app.joined();
  });
  return app;
}

function connectJs() {
  return new Promise((resolve, reject) => {
    const socket = new Socket(WS, {
      transport: TimedWebSocket,
      reconnectAfterMs: () => 60_000,
      rejoinAfterMs: () => 60_000,
      timeout: 600_000,
    });
    socket.onOpen(() => resolve(socket));
    socket.onError((e) => reject(new Error(`phoenix.js socket error ${e}`)));
    socket.connect();
  });
}

function joinJs(socket, t) {
  const channel = socket.channel(t, {});
  return new Promise((resolve, reject) => {
    channel
      .join()
      .receive("ok", () => resolve(channel))
      .receive("error", (e) => reject(new Error(`join error ${JSON.stringify(e)}`)))
      .receive("timeout", () => reject(new Error("join timeout")));
  });
}

const settle = () => new Promise((r) => setTimeout(r, 200));

// Starts a measurement window: resets the callback time.
let t0 = 0;
function start() {
  performance.clearMarks();
  sockMs = 0;
  updMs = 0;
  sendMs = 0;
  cbCalls = 0;
  performance.mark("bench:start");
  t0 = performance.now();
}
// Ends it: wall seconds and callback milliseconds.
function end() {
  const t1 = performance.now();
  const r = {
    secs: (t1 - t0) / 1000,
    cb_us: (sockMs + updMs) * 1000,
    sock_us: sockMs * 1000,
    update_us: updMs * 1000,
    send_us: sendMs * 1000,
    sock_calls: cbCalls,
  };
  performance.mark("bench:end");
  return r;
}

// Each measurement is prepared (connect, join, settle), run, then closed, in three calls, so
// that the runner can read the main thread's CPU time right before and after `run`.
async function burstOurs(driver, n, size) {
  const app = await ourApp(driver, `burst-${driver}`);
  await settle();
  const run = async () => {
    let frames = 0;
    start();
    if (!app.start_burst(n, size)) throw new Error("start_burst failed");
    const check = deadline(300, "plugin burst");
    await loops[driver](() => {
      check();
      update(app);
      frames++;
      return app.ticks() >= n;
    });
    const r = end();
    r.n = app.ticks();
    r.frames = frames;
    return r;
  };
  return { run, close: () => app.free() };
}

async function burstJs(n, size) {
  const socket = await connectJs();
  const channel = await joinJs(socket, topic("burst-js"));
  await settle();
  const run = async () => {
    let count = 0;
    const r = await new Promise((resolve) => {
      channel.on("tick", () => {
        count++;
        if (count === n) resolve(end());
      });
      start();
      channel.push("burst", { n, size }, 600_000);
    });
    r.n = count;
    return r;
  };
  return { run, close: () => socket.disconnect() };
}

// Sequential round trips. The window spans warm-up and timed ones (a frame-driven app cannot
// start the timed ones at an exact moment), for every client alike: `n` in the result counts
// all of them; the latencies are the timed ones only.
async function rttOurs(driver, warmup, n) {
  const app = await ourApp(driver, `rtt-${driver}`);
  await settle();
  const run = async () => {
    app.start_rtt(warmup, n);
    let frames = 0;
    start();
    const check = deadline(300, "plugin rtt");
    await loops[driver](() => {
      check();
      update(app);
      frames++;
      return app.rtt_done() >= n;
    });
    const r = end();
    r.n = warmup + n;
    r.lat_us = Array.from(app.rtt_latencies_us());
    r.frames = frames;
    const failed = app.rtt_failed();
    if (failed) throw new Error(`${failed} echo replies were not ok`);
    return r;
  };
  return { run, close: () => app.free() };
}

async function rttJs(warmup, n) {
  const socket = await connectJs();
  const channel = await joinJs(socket, topic("rtt-js"));
  await settle();
  const run = async () => {
    const lat = [];
    let i = -warmup;
    start();
    const r = await new Promise((resolve, reject) => {
      const one = () => {
        const t = performance.now();
        channel
          .push("echo", { i, body: "hello" }, 600_000)
          .receive("ok", () => {
            if (i >= 0) lat.push((performance.now() - t) * 1000);
            i++;
            if (i < n) one();
            else resolve(end());
          })
          .receive("error", (e) => reject(new Error(`echo error ${JSON.stringify(e)}`)));
      };
      one();
    });
    r.n = warmup + n;
    r.lat_us = lat;
    return r;
  };
  return { run, close: () => socket.disconnect() };
}

await init();
let current = null;
window.bench = {
  isolated: self.crossOriginIsolated,
  // prepare("burst", client, n, size) or prepare("rtt", client, warmup, n); then run(), close().
  async prepare(kind, client, a, b) {
    if (kind === "burst") current = client === "js" ? await burstJs(a, b) : await burstOurs(client, a, b);
    else current = client === "js" ? await rttJs(a, b) : await rttOurs(client, a, b);
  },
  async run() {
    return current.run();
  },
  async close() {
    current.close();
    current = null;
  },
  // Frames per second of requestAnimationFrame over `ms` (headless Chromium's frame clock).
  async rafRate(ms) {
    let k = 0;
    const t = performance.now();
    await rafLoop(() => ++k && performance.now() - t >= ms);
    return (k * 1000) / (performance.now() - t);
  },
};
window.benchReady = true;
