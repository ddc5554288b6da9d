// phoenix.js 1.8.16 (over `ws`) doing what `cargo run --release --example swarm` does: N sockets in
// one node process, each joining room:swarm-K (K = i % rooms) with {user_id: "bot-i"} and pushing
// "move" {x, y} at RATE per second while receiving the room's broadcasts. Prints one JSON summary
// line with the swarm example's field names (benches/swarm_compare.py compares the two).
//
//   node swarm.mjs <ws://127.0.0.1:PORT/socket> <bots> <rooms> <rate> <seconds> [batch_ms]
//
// Each bot pushes on its own timer, on time. With batch_ms, one timer every batch_ms sends every
// move that is due instead (a game loop sending a frame's input together, as the Rust swarm does
// by default).
//
// CPU is process.cpuUsage() (user + system, every node thread) over the pushing phase; memory is
// process.memoryUsage().rss before the first socket and after every socket joined. Reply latency
// runs from each push to its reply callback, over the replies that arrive within the run.
import { Socket } from "phoenix";
import WebSocket from "ws";

const [url, botsArg, roomsArg, rateArg, secondsArg, batchArg] = process.argv.slice(2);
if (!url) {
  console.error("usage: node swarm.mjs URL BOTS ROOMS RATE SECONDS");
  process.exit(2);
}
const bots = Number(botsArg ?? 100);
const rooms = Number(roomsArg ?? Math.max(1, Math.ceil(bots / 10)));
const rate = Number(rateArg ?? 5);
const seconds = Number(secondsArg ?? 10);
const batchMs = batchArg ? Number(batchArg) : 0;

const hard = setTimeout(() => {
  console.error("swarm.mjs: did not finish in time");
  process.exit(1);
}, (seconds + 120) * 1000);

const totals = {
  pushes: 0,
  replies_ok: 0,
  replies_error: 0,
  timeouts: 0,
  messages: 0,
  presence: 0,
  connects: 0,
  disconnects: 0,
  channel_errors: 0,
};
const cpuUs = () => {
  const u = process.cpuUsage();
  return u.user + u.system;
};

const rssBefore = process.memoryUsage().rss;
const t0 = performance.now();
const channels = [];
await Promise.all(
  Array.from({ length: bots }, (_, i) => {
    const socket = new Socket(url, { transport: WebSocket, timeout: 10_000 });
    socket.onOpen(() => totals.connects++);
    socket.onClose(() => totals.disconnects++);
    socket.connect();
    const channel = socket.channel(`room:swarm-${i % rooms}`, { user_id: `bot-${i}` });
    for (const ev of ["move", "shout"]) channel.on(ev, () => totals.messages++);
    channel.on("presence_state", () => totals.presence++);
    channel.on("presence_diff", () => totals.presence++);
    channel.onError(() => totals.channel_errors++);
    channels.push({ channel, i, x: 0 });
    return new Promise((resolve) => {
      channel
        .join()
        .receive("ok", resolve)
        .receive("error", resolve)
        .receive("timeout", resolve);
    });
  }),
);
const connectSeconds = (performance.now() - t0) / 1000;
const rssAfterJoin = process.memoryUsage().rss;

// Each bot pushes every 1/rate s, spread over the period as the Rust swarm spreads them.
const period = 1000 / rate;
const timers = [];
// Reply latency, ms: from the push to its reply callback (as the Rust swarm's, push to reply read).
const latencies = [];
const before = { ...totals };
const c0 = cpuUs();
const k0 = process.cpuUsage().system;
const run0 = performance.now();
const pushMove = (b) => {
  b.x = (b.x + 1) % 100;
  totals.pushes++;
  const sent = performance.now();
  b.channel
    .push("move", { x: b.x, y: b.i })
    .receive("ok", () => {
      totals.replies_ok++;
      latencies.push(performance.now() - sent);
    })
    .receive("error", () => {
      totals.replies_error++;
      latencies.push(performance.now() - sent);
    })
    .receive("timeout", () => totals.timeouts++);
};
if (rate > 0 && batchMs > 0) {
  // One loop: every batch_ms, the moves that are due (spread over the period as on time).
  for (const b of channels) b.due = run0 + (period * (b.i % 97)) / 97;
  timers.push(
    setInterval(() => {
      const now = performance.now();
      for (const b of channels) {
        if (b.due > now) continue;
        pushMove(b);
        b.due += period;
        if (b.due < now) b.due = now + period;
      }
    }, batchMs),
  );
} else if (rate > 0) {
  for (const b of channels) {
    const start = (period * (b.i % 97)) / 97;
    timers.push(
      setTimeout(() => {
        const push = () => pushMove(b);
        push();
        timers.push(setInterval(push, period));
      }, start),
    );
  }
}
await new Promise((r) => setTimeout(r, seconds * 1000));
for (const t of timers) clearInterval(t);
const cpu = (cpuUs() - c0) / 1e6;
const systemCpu = (process.cpuUsage().system - k0) / 1e6;
const wall = (performance.now() - run0) / 1000;
// Over the pushing phase only, like the CPU (the joins' presence events are not work of the run).
const runTotals = Object.fromEntries(Object.entries(totals).map(([k, v]) => [k, v - before[k]]));
const received = runTotals.messages + runTotals.replies_ok + runTotals.replies_error + runTotals.presence;
clearTimeout(hard);
latencies.sort((a, b) => a - b);
const pct = (p) => (latencies.length ? latencies[Math.round((latencies.length - 1) * p)] * 1000 : 0);
const replyLatency = {
  count: latencies.length,
  mean_us: latencies.length ? (latencies.reduce((a, b) => a + b, 0) / latencies.length) * 1000 : 0,
  p50_us: pct(0.5),
  p99_us: pct(0.99),
  max_us: latencies.length ? latencies[latencies.length - 1] * 1000 : 0,
};
console.log(
  JSON.stringify({
    client: "phoenix.js",
    batch_ms: batchMs,
    bots,
    rooms,
    rate,
    seconds: wall,
    connect_seconds: connectSeconds,
    totals,
    run_totals: runTotals,
    client_cpu_seconds: cpu,
    client_system_cpu_seconds: systemCpu,
    client_cpu_us_per_message: received + runTotals.pushes > 0 ? (cpu * 1e6) / (received + runTotals.pushes) : null,
    rss_before_bytes: rssBefore,
    rss_after_join_bytes: rssAfterJoin,
    rss_per_socket_bytes: (rssAfterJoin - rssBefore) / bots,
    reply_latency: replyLatency,
  }),
);
process.exit(0);
