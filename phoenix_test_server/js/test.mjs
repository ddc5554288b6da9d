// Checks phoenix_test_server with the official client: phoenix.js 1.8.16 over the `ws` package.
// Usage: node test.mjs ws://127.0.0.1:PORT/socket   (or PHX_URL=... node test.mjs)
// Prints one line per check and ends with "N passed, M failed"; exits 1 on any failure.
import assert from "node:assert/strict";
import { Presence, Socket } from "phoenix";
import WebSocket from "ws";

const url = process.argv[2] || process.env.PHX_URL;
if (!url) {
  console.error("usage: node test.mjs ws://127.0.0.1:PORT/socket");
  process.exit(2);
}

const TIMEOUT_MS = 5000;
let passed = 0;
let failed = 0;
const sockets = [];

function withTimeout(promise, ms, what) {
  let timer;
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, t]).finally(() => clearTimeout(timer));
}

async function check(name, fn) {
  try {
    await withTimeout(fn(), TIMEOUT_MS, name);
    passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${e && e.stack ? e.stack : e}`);
  }
}

function newSocket(opts = {}) {
  const socket = new Socket(url, {
    transport: WebSocket,
    reconnectAfterMs: () => 60_000,
    rejoinAfterMs: () => 60_000,
    ...opts,
  });
  sockets.push(socket);
  return socket;
}

function connected(socket) {
  return new Promise((resolve, reject) => {
    socket.onOpen(() => resolve(socket));
    socket.onError((e) => reject(new Error(`socket error: ${e && e.message}`)));
    socket.connect();
  });
}

function join(channel) {
  return new Promise((resolve) => {
    channel
      .join()
      .receive("ok", (r) => resolve({ status: "ok", response: r }))
      .receive("error", (r) => resolve({ status: "error", response: r }))
      .receive("timeout", () => resolve({ status: "timeout" }));
  });
}

function push(channel, event, payload = {}) {
  return new Promise((resolve) => {
    channel
      .push(event, payload)
      .receive("ok", (r) => resolve({ status: "ok", response: r }))
      .receive("error", (r) => resolve({ status: "error", response: r }))
      .receive("timeout", () => resolve({ status: "timeout" }));
  });
}

function next(channel, event) {
  return new Promise((resolve) => {
    const ref = channel.on(event, (payload) => {
      channel.off(event, ref);
      resolve(payload);
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const bytes = (buf) => Array.from(new Uint8Array(buf));

const a = newSocket({ params: { socket_id: "js-a" } });
const b = newSocket();

await check("connect (onOpen)", async () => {
  await connected(a);
  await connected(b);
});

const echo = a.channel("echo:js", {});
await check("join ok with reply payload", async () => {
  assert.deepEqual(await join(echo), { status: "ok", response: { joined: "echo:js" } });
});

await check("join refused by join/3 (error reply)", async () => {
  const ch = a.channel("private:js", { password: "wrong" });
  assert.deepEqual(await join(ch), { status: "error", response: { reason: "unauthorized" } });
  ch.leave();
});

await check("join of an unmatched topic", async () => {
  const ch = a.channel("nope:js", {});
  assert.deepEqual(await join(ch), { status: "error", response: { reason: "unmatched topic" } });
  ch.leave();
});

await check("echo reply", async () => {
  const payload = { hello: "world", n: 1.5, list: [1, null, true], "ü": "ß" };
  assert.deepEqual(await push(echo, "echo", payload), { status: "ok", response: payload });
});

await check("error reply", async () => {
  assert.deepEqual(await push(echo, "error_reply"), { status: "error", response: { reason: "requested" } });
});

await check("server push before the reply", async () => {
  const order = [];
  const got = next(echo, "custom").then((p) => order.push(["custom", p]));
  const reply = push(echo, "push_me", { event: "custom", payload: { x: 1 } }).then((r) => order.push(["reply", r]));
  await Promise.all([got, reply]);
  assert.deepEqual(order, [["custom", { x: 1 }], ["reply", { status: "ok", response: {} }]]);
});

await check("binary payloads both ways (ArrayBuffer)", async () => {
  const data = new Uint8Array([0, 1, 2, 254, 255]).buffer;
  const r = await push(echo, "binary", data);
  assert.equal(r.status, "ok");
  assert.ok(r.response instanceof ArrayBuffer, "binary reply is an ArrayBuffer");
  assert.deepEqual(bytes(r.response), [0, 1, 2, 254, 255]);
  const pushed = next(echo, "binary_push");
  assert.equal((await push(echo, "push_binary", new Uint8Array([9, 8, 7]).buffer)).status, "ok");
  const p = await pushed;
  assert.ok(p instanceof ArrayBuffer);
  assert.deepEqual(bytes(p), [9, 8, 7]);
});

const roomA = a.channel("room:js", { user_id: "alice" });
const roomB = b.channel("room:js", { user_id: "bob" });
const presenceA = new Presence(roomA);
await check("presence state and diffs with two clients (Presence)", async () => {
  const synced = (want) =>
    new Promise((resolve) => {
      const test = () => {
        const keys = presenceA.list((id) => id).sort();
        if (JSON.stringify(keys) === JSON.stringify(want)) resolve(keys);
      };
      presenceA.onSync(test);
      test();
    });
  assert.equal((await join(roomA)).status, "ok");
  await synced(["alice"]);
  assert.equal((await join(roomB)).status, "ok");
  await synced(["alice", "bob"]);
  const metas = presenceA.list((id, { metas }) => metas)[0];
  assert.ok(typeof metas[0].phx_ref === "string" && typeof metas[0].online_at === "number");
});

await check("broadcast (sender included) and broadcast_from (sender excluded)", async () => {
  const seenA = [];
  const seenB = [];
  roomA.on("move", (p) => seenA.push(p));
  const shoutA = next(roomA, "shout");
  const shoutB = next(roomB, "shout");
  assert.equal((await push(roomA, "shout", { msg: "hello" })).status, "ok");
  assert.deepEqual(await shoutA, { msg: "hello" });
  assert.deepEqual(await shoutB, { msg: "hello" });
  const moveB = next(roomB, "move");
  roomB.on("move", (p) => seenB.push(p));
  assert.equal((await push(roomA, "move", { x: 1, y: 2 })).status, "ok");
  assert.deepEqual(await moveB, { x: 1, y: 2 });
  await sleep(100);
  assert.deepEqual(seenA, []);
});

await check("presence leave diff when the other client leaves", async () => {
  const left = new Promise((resolve) => presenceA.onLeave((id, current, leftPres) => id === "bob" && current.metas.length === 0 && resolve(leftPres)));
  roomB.leave();
  const l = await left;
  assert.equal(l.metas.length, 1);
});

await check("channel crash -> onError", async () => {
  const ch = a.channel("echo:crash", {});
  assert.equal((await join(ch)).status, "ok");
  const errored = new Promise((resolve) => ch.onError((reason) => resolve(reason)));
  ch.push("crash", {});
  await errored;
  assert.equal(ch.state, "errored");
  ch.leave();
});

await check("leave -> ok reply and onClose", async () => {
  const ch = a.channel("echo:leave", {});
  assert.equal((await join(ch)).status, "ok");
  const closed = new Promise((resolve) => ch.onClose(() => resolve()));
  const left = new Promise((resolve) => ch.leave().receive("ok", () => resolve()));
  await Promise.all([left, closed]);
  assert.equal(ch.state, "closed");
});

await check("refused connect (token=bad) -> onError, never open", async () => {
  const s = newSocket({ params: { token: "bad" } });
  let opened = false;
  s.onOpen(() => (opened = true));
  await new Promise((resolve) => {
    s.onError(() => resolve());
    s.connect();
  });
  await sleep(50);
  assert.equal(opened, false);
  s.disconnect();
});

await check("auth token (Sec-WebSocket-Protocol) reaches the server", async () => {
  const s = newSocket({ authToken: "good-token" });
  await connected(s);
  const ch = s.channel("echo:auth", {});
  assert.equal((await join(ch)).status, "ok");
  assert.deepEqual(await push(ch, "whoami"), { status: "ok", response: { auth_token: "good-token" } });
});

await check("heartbeat round trip (socket.ping)", async () => {
  const rtt = await new Promise((resolve) => a.ping((ms) => resolve(ms)));
  assert.ok(typeof rtt === "number" && rtt >= 0);
});

for (const s of sockets) s.disconnect();
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
