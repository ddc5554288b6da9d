// phoenix.js 1.8.16 over `ws`: the node side of benches/e2e_*.rs (they run it; see BENCHMARKS.md).
//
//   node bench.mjs <ws://127.0.0.1:PORT/socket> burst <n> <size>   -> ticks received, wall time, CPU
//   node bench.mjs <url> rtt <n>                                   -> sequential echo round trips
//   node bench.mjs <url> pipeline <n>                               -> n pushes at once, all replies
//
// Prints one JSON line on stdout. Time is measured inside the script (node start-up and the connect
// and join are not counted); CPU is process.cpuUsage() (user + system, every node thread).
import { Socket } from "phoenix";
import WebSocket from "ws";

const [url, mode, a, b] = process.argv.slice(2);
if (!url || !mode) {
  console.error("usage: node bench.mjs URL burst N SIZE | rtt N | pipeline N");
  process.exit(2);
}
const LIMIT_MS = 100_000; // the whole run is bounded: exit(1) past it

const hard = setTimeout(() => {
  console.error(`bench.mjs: ${mode} did not finish in ${LIMIT_MS} ms`);
  process.exit(1);
}, LIMIT_MS);

function connect() {
  return new Promise((resolve, reject) => {
    const socket = new Socket(url, {
      transport: WebSocket,
      reconnectAfterMs: () => 60_000,
      rejoinAfterMs: () => 60_000,
      timeout: 600_000,
    });
    socket.onOpen(() => resolve(socket));
    socket.onError((e) => reject(new Error(`socket error: ${e && e.message}`)));
    socket.connect();
  });
}

function join(socket, topic) {
  const channel = socket.channel(topic, {});
  return new Promise((resolve, reject) => {
    channel
      .join()
      .receive("ok", () => resolve(channel))
      .receive("error", (e) => reject(new Error(`join error ${JSON.stringify(e)}`)))
      .receive("timeout", () => reject(new Error("join timeout")));
  });
}

const now = () => process.hrtime.bigint();
const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

function burst(channel, n, size) {
  return new Promise((resolve) => {
    let count = 0;
    let t0;
    let c0;
    channel.on("tick", () => {
      count++;
      if (count === n) {
        const ns = Number(now() - t0);
        resolve({ mode: "burst", n, secs: ns / 1e9, cpu_us: cpuUs() - c0 });
      }
    });
    c0 = cpuUs();
    t0 = now();
    channel.push("burst", { n, size }, 600_000);
  });
}

const WARMUP = 500; // round trips before the timed ones (the Rust clients do the same)

function rtt(channel, n) {
  return new Promise((resolve) => {
    const lat = new Array(n);
    let i = -WARMUP;
    let c0;
    let start;
    const one = () => {
      if (i === 0) {
        c0 = cpuUs();
        start = now();
      }
      const t = now();
      channel
        .push("echo", { i, body: "hello" }, 600_000)
        .receive("ok", () => {
          if (i >= 0) lat[i] = Number(now() - t);
          i++;
          if (i < n) {
            one();
          } else {
            const ns = Number(now() - start);
            resolve({ mode: "rtt", n, secs: ns / 1e9, cpu_us: cpuUs() - c0, lat_ns: lat });
          }
        });
    };
    one();
  });
}

function pipeline(channel, n) {
  return new Promise((resolve) => {
    let got = 0;
    const c0 = cpuUs();
    const t0 = now();
    for (let i = 0; i < n; i++) {
      channel.push("echo", { i }, 600_000).receive("ok", () => {
        got++;
        if (got === n) {
          const ns = Number(now() - t0);
          resolve({ mode: "pipeline", n, secs: ns / 1e9, cpu_us: cpuUs() - c0 });
        }
      });
    }
  });
}

const socket = await connect();
const topic = `echo:js-${process.pid}`;
const channel = await join(socket, topic);
let result;
if (mode === "burst") result = await burst(channel, Number(a), Number(b));
else if (mode === "rtt") result = await rtt(channel, Number(a));
else if (mode === "pipeline") result = await pipeline(channel, Number(a));
else {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
console.log(JSON.stringify(result));
clearTimeout(hard);
socket.disconnect(() => process.exit(0));
setTimeout(() => process.exit(0), 1000);
