// The official socket.io-client (4.x) against `throng serve --app conformance`, over
// Engine.IO HTTP long-polling (`transports: ["polling"]`), and over the default
// polling-then-upgrade-to-WebSocket path. Run by tests/sio.rs with
// THRONG_URL=http://127.0.0.1:PORT; also passes against tests/sio/node-server.js.
// Its namespace-wide broadcasts go to `/custom` under event names of its own (`p-…`),
// so it can share a server with the other suites.
//
// The node client keeps no cookies (withCredentials is false, so engine.io-client makes
// no cookie jar): the server must find a polling session by its `sid` alone. In node,
// engine.io-client polls with xmlhttprequest-ssl, which uses `agent: false` unless told
// otherwise: every request of a polling session goes over a new TCP connection.
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const http = require("node:http");
const { io } = require("socket.io-client");
const { once, ack, maybe } = require("./helpers");
const { Fetch, NodeXHR, NodeWebSocket } = require("engine.io-client");

const URL = process.env.THRONG_URL;
if (!URL) throw new Error("THRONG_URL is not set");

const sockets = [];

function client(nsp = "/", opts = {}) {
  const socket = io(URL + nsp, {
    transports: ["polling"],
    forceNew: true,
    reconnection: false,
    timeout: 5000,
    ...opts,
  });
  sockets.push(socket);
  return socket;
}


async function connected(nsp, opts) {
  const socket = client(nsp, opts);
  await once(socket, "connect");
  return socket;
}



const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/// An http.Agent that counts the TCP connections it opens.
function countingAgent(opts) {
  const agent = new http.Agent(opts);
  agent.opened = 0;
  const create = agent.createConnection.bind(agent);
  agent.createConnection = (...args) => {
    agent.opened++;
    return create(...args);
  };
  return agent;
}

/// engine.io-client's WebSocket transport, opened `ms` late: the upgrade probe starts
/// once Socket.IO is connected over polling, so traffic is in flight while the
/// transport changes (with no delay, the upgrade is over before CONNECT is answered).
function lateWebSocket(ms) {
  return class LateWebSocket extends NodeWebSocket {
    doOpen() {
      setTimeout(() => {
        if (this.readyState === "opening") super.doOpen();
      }, ms);
    }
  };
}

test.after(() => {
  for (const s of sockets) s.disconnect();
});

// ---------------------------------------------------------------- polling only

test("polling: connect gives a Socket.IO id distinct from the Engine.IO sid", async () => {
  const s = await connected("/");
  assert.match(s.id, /^[A-Za-z0-9_-]{20}$/);
  assert.match(s.io.engine.id, /^[A-Za-z0-9_-]{20}$/);
  assert.notEqual(s.id, s.io.engine.id);
  assert.equal(s.io.engine.transport.name, "polling");
  const [who] = await ack(s, "whoami");
  assert.deepEqual(who, { sid: s.id, nsp: "/", auth: {}, rooms: [] });
});

test("polling: agent false, every request on a new TCP connection, no cookies", async () => {
  // agent: false is passed through to xmlhttprequest-ssl (also its default in node).
  const s = await connected("/", { agent: false, withCredentials: false });
  assert.deepEqual(await ack(s, "echo", "fresh"), ["fresh"]);

  // The same, counted: an agent without keep-alive opens one connection per request.
  const agent = countingAgent({ keepAlive: false });
  const c = await connected("/", { agent });
  for (let i = 0; i < 10; i++) assert.deepEqual(await ack(c, "echo", i), [i]);
  // Handshake GET, CONNECT POST, and at least a POST and a GET per round trip.
  assert.ok(agent.opened >= 22, `only ${agent.opened} TCP connections`);
  c.disconnect();
  agent.destroy();
});

test("polling: over a keep-alive agent, and over fetch (undici's pool)", async () => {
  const agent = countingAgent({ keepAlive: true, maxSockets: 4 });
  const s = await connected("/", { agent });
  for (let i = 0; i < 5; i++) assert.deepEqual(await ack(s, "echo", "ka", i), ["ka", i]);
  assert.ok(agent.opened >= 1);
  s.disconnect();

  const f = await connected("/", { transports: [Fetch] });
  assert.equal(f.io.engine.transport.name, "polling");
  for (let i = 0; i < 5; i++) assert.deepEqual(await ack(f, "echo", "fetch", i), ["fetch", i]);
  f.disconnect();
  await sleep(50);
  agent.destroy();
});

test("polling: echo with an ack returns exactly the arguments", async () => {
  const s = await connected("/");
  const args = [1, "two", { three: [3, null, true] }, "é\u0000\"quoted\"\u2028\u001e"];
  assert.deepEqual(await ack(s, "echo", ...args), args);
  assert.deepEqual(await ack(s, "echo"), []);
});

test("polling: echo without an ack comes back as an event", async () => {
  const s = await connected("/");
  const got = once(s, "echo");
  s.emit("echo", "hello", 42);
  assert.deepEqual(await got, ["hello", 42]);
});

test("polling: fifty concurrent acks all come back, each to its own call", async () => {
  const s = await connected("/");
  const replies = await Promise.all(
    Array.from({ length: 50 }, (_, i) => ack(s, "echo", i, `n${i}`))
  );
  replies.forEach((r, i) => assert.deepEqual(r, [i, `n${i}`]));
});

test("polling: binary attachments round-trip (base64), nested, several, empty", async () => {
  const s = await connected("/");
  const a = Buffer.from([0, 1, 2, 3, 255]);
  const b = Buffer.alloc(70000, 7);
  const reply = await ack(s, "echo", a, { nested: { deep: [b] } }, Buffer.alloc(0));
  assert.equal(reply.length, 3);
  assert.deepEqual(Buffer.from(reply[0]), a);
  assert.deepEqual(Buffer.from(reply[1].nested.deep[0]), b);
  assert.equal(Buffer.from(reply[2]).length, 0);

  // And as an event (BINARY_EVENT back, not BINARY_ACK).
  const got = once(s, "echo");
  s.emit("echo", "bin", Buffer.from("xyz"));
  const [name, buf] = await got;
  assert.equal(name, "bin");
  assert.equal(Buffer.from(buf).toString(), "xyz");
});

test("polling: namespaces /custom on the same manager, unknown ones refused", async () => {
  const root = await connected("/");
  const custom = root.io.socket("/custom");
  sockets.push(custom);
  await once(custom, "connect");
  assert.notEqual(custom.id, root.id);
  const [who] = await ack(custom, "whoami");
  assert.equal(who.nsp, "/custom");
  assert.equal(who.sid, custom.id);
  // Both namespaces share the one polling session.
  assert.equal(custom.io.engine, root.io.engine);
  assert.deepEqual(await ack(root, "echo", "root"), ["root"]);

  const nope = client("/nope");
  const [err] = await once(nope, "connect_error");
  assert.equal(err.message, "Invalid namespace");
});

test("polling: /guarded connect_error with message and data, then a good token", async () => {
  const bad = client("/guarded", { auth: { token: "wrong" } });
  const [err] = await once(bad, "connect_error");
  assert.equal(err.message, "unauthorized");
  assert.deepEqual(err.data, { code: "E_UNAUTHORIZED" });
  const none = client("/guarded");
  const [err2] = await once(none, "connect_error");
  assert.equal(err2.message, "unauthorized");
  assert.deepEqual(err2.data, { code: "E_UNAUTHORIZED" });

  const good = await connected("/guarded", { auth: { token: "s3cret" } });
  const [who] = await ack(good, "whoami");
  assert.deepEqual(who.auth, { token: "s3cret" });
  assert.equal(who.nsp, "/guarded");
  assert.deepEqual(who.rooms, []);
});

test("polling: a refused namespace leaves the session and its other namespaces working", async () => {
  const root = await connected("/");
  const guarded = root.io.socket("/guarded", { auth: { token: "nope" } });
  sockets.push(guarded);
  const [err] = await once(guarded, "connect_error");
  assert.equal(err.message, "unauthorized");
  assert.equal(root.connected, true);
  assert.deepEqual(await ack(root, "echo", "still"), ["still"]);
});

test("polling: ask, the server's ack request is answered and relayed", async () => {
  const s = await connected("/");
  s.on("question", (x, cb) => cb({ answer: x * 2 }, "extra"));
  assert.deepEqual(await ack(s, "ask", "question", 21), [{ answer: 42 }, "extra"]);
  // With a binary reply.
  s.on("bin-question", (cb) => cb(Buffer.from([9, 8, 7])));
  const [buf] = await ack(s, "ask", "bin-question");
  assert.deepEqual(Buffer.from(buf), Buffer.from([9, 8, 7]));
});

test("polling: rooms with several clients, to-room, broadcast, to-all", async () => {
  // In /custom: namespace-wide events stay away from the raw suite's sessions in `/`.
  const [a, b, c] = await Promise.all([connected("/custom"), connected("/custom"), connected("/custom")]);
  assert.deepEqual(await ack(a, "join", "pr1"), [["pr1"]]);
  assert.deepEqual(await ack(b, "join", "pr1"), [["pr1"]]);
  const gotA = maybe(a, "p-news", 2000);
  const gotB = maybe(b, "p-news", 2000);
  const gotC = maybe(c, "p-news", 500);
  assert.deepEqual(await ack(c, "to-room", "pr1", "p-news", 1, { x: "y" }), []);
  assert.deepEqual(await gotA, [1, { x: "y" }]);
  assert.deepEqual(await gotB, [1, { x: "y" }]);
  assert.equal(await gotC, null);

  const selfGot = maybe(a, "p-hey", 500);
  const others = [maybe(b, "p-hey", 2000), maybe(c, "p-hey", 2000)];
  assert.deepEqual(await ack(a, "broadcast", "p-hey", "there"), []);
  for (const got of await Promise.all(others)) assert.deepEqual(got, ["there"]);
  assert.equal(await selfGot, null);

  const all = [a, b, c].map((s) => maybe(s, "p-all", 2000));
  assert.deepEqual(await ack(b, "to-all", "p-all", 7, Buffer.from("b")), []);
  for (const got of await Promise.all(all)) {
    assert.equal(got[0], 7);
    assert.equal(Buffer.from(got[1]).toString(), "b");
  }

  assert.deepEqual(await ack(b, "leave", "pr1"), [[]]);
  const again = maybe(b, "p-news", 500);
  await ack(a, "to-room", "pr1", "p-news", 2);
  assert.equal(await again, null);
});

test("polling: disconnect-me, io server disconnect for that namespace only", async () => {
  const root = await connected("/");
  const custom = root.io.socket("/custom");
  sockets.push(custom);
  await once(custom, "connect");
  const gone = once(custom, "disconnect");
  custom.emit("disconnect-me");
  const [reason] = await gone;
  assert.equal(reason, "io server disconnect");
  assert.equal(root.connected, true);
  assert.deepEqual(await ack(root, "echo", "still"), ["still"]);
});

test("polling: close-me, io server disconnect and no reconnection", async () => {
  const s = await connected("/", { reconnection: true, reconnectionDelay: 100 });
  const gone = once(s, "disconnect");
  s.emit("close-me");
  const [reason] = await gone;
  assert.equal(reason, "io server disconnect");
  assert.equal(await maybe(s, "connect", 600), null);
  assert.equal(s.connected, false);
});

test("polling: drop-transport, transport close, and the client reconnects", async () => {
  const s = await connected("/", { reconnection: true, reconnectionDelay: 100 });
  const firstId = s.id;
  const gone = once(s, "disconnect");
  s.emit("drop-transport");
  const [reason] = await gone;
  assert.equal(reason, "transport close");
  await once(s, "connect");
  assert.notEqual(s.id, firstId);
  assert.equal(s.io.engine.transport.name, "polling");
  assert.deepEqual(await ack(s, "echo", "back"), ["back"]);
});

test("polling: stays connected across several heartbeats (pingInterval 1000 ms)", async () => {
  const s = await connected("/");
  let pings = 0;
  s.io.engine.on("ping", () => pings++);
  const lost = maybe(s, "disconnect", 3300);
  assert.equal(await lost, null, "disconnected during the heartbeats");
  assert.ok(pings >= 2, `only ${pings} pings in 3.3 s`);
  assert.equal(s.connected, true);
  assert.equal(s.io.engine.transport.name, "polling");
  assert.deepEqual(await ack(s, "echo", "alive"), ["alive"]);
});

test("polling: 200 emits come back in order, as events and as acks", async () => {
  const s = await connected("/");
  const seen = [];
  const done = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${seen.length} echoes`)), 8000);
    s.on("echo", (i) => {
      seen.push(i);
      if (seen.length === 200) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  for (let i = 0; i < 200; i++) s.emit("echo", i);
  await done;
  assert.deepEqual(seen, Array.from({ length: 200 }, (_, i) => i));

  const order = [];
  await Promise.all(
    Array.from({ length: 200 }, (_, i) => ack(s, "echo", i).then(([n]) => order.push(n)))
  );
  assert.deepEqual(order, Array.from({ length: 200 }, (_, i) => i));
});

test("polling: a large payload (about 300 KB) both ways", async () => {
  const s = await connected("/");
  const big = "z".repeat(300000);
  assert.deepEqual(await ack(s, "echo", big), [big]);
  const bin = Buffer.alloc(200000, 3);
  const [back] = await ack(s, "echo", bin);
  assert.deepEqual(Buffer.from(back), bin);
});

// ---------------------------------------------------- polling, then the upgrade

test("upgrade: default transports go polling then websocket", async () => {
  // No `transports` option: the client's default (polling, websocket, webtransport).
  const s = io(URL, { forceNew: true, reconnection: false, timeout: 5000 });
  sockets.push(s);
  const engine = s.io.engine;
  const upgraded = once(engine, "upgrade");
  await once(s, "connect");
  const [transport] = await upgraded;
  assert.equal(transport.name, "websocket");
  assert.equal(engine.transport.name, "websocket");
  assert.deepEqual(await ack(s, "echo", "after"), ["after"]);
  assert.notEqual(s.id, engine.id);
});

test("upgrade: nothing lost or reordered while the transport changes", async () => {
  const s = client("/", { transports: [NodeXHR, lateWebSocket(300)] });
  const engine = s.io.engine;
  let sent = 0;
  let upgradedAt = -1;
  engine.once("upgrade", () => (upgradedAt = sent));
  const events = [];
  s.on("echo", (i) => events.push(i));
  await once(s, "connect");
  assert.equal(engine.transport.name, "polling");

  // One emit with an ack and one without every 2 ms, until 40 emits after the upgrade.
  const acks = [];
  const ackOrder = [];
  const via = [];
  await new Promise((resolve, reject) => {
    const deadline = setTimeout(() => {
      clearInterval(tick);
      reject(new Error(`no upgrade after ${sent} emits`));
    }, 5000);
    const tick = setInterval(() => {
      const i = sent++;
      via.push(engine.transport.name);
      acks.push(ack(s, "echo", i).then(([n]) => ackOrder.push(n)));
      s.emit("echo", i);
      if (upgradedAt >= 0 && sent >= upgradedAt + 40) {
        clearInterval(tick);
        clearTimeout(deadline);
        resolve();
      }
    }, 2);
  });
  await Promise.all(acks);
  const all = Array.from({ length: sent }, (_, i) => i);
  assert.deepEqual(ackOrder, all);
  for (let k = 0; k < 50 && events.length < sent; k++) await sleep(20);
  assert.deepEqual(events, all);
  assert.ok(via.includes("polling"), "nothing was emitted before the upgrade");
  assert.equal(via[via.length - 1], "websocket");
  assert.equal(engine.transport.name, "websocket");
});

test("upgrade: incoming broadcasts during the upgrade all arrive, in order", async () => {
  // `broadcast` reaches every socket of /custom but the sender; only this test
  // listens to `p-tick`.
  const sender = await connected("/custom", { transports: ["websocket"] });
  const s = client("/custom", { transports: [NodeXHR, lateWebSocket(300)] });
  const got = [];
  s.on("p-tick", (i) => got.push(i));
  let n = 0;
  let upgradedAfter = -1;
  const upgraded = once(s.io.engine, "upgrade").then(() => (upgradedAfter = n));
  await once(s, "connect");
  assert.equal(s.io.engine.transport.name, "polling");
  const pump = setInterval(() => sender.emit("broadcast", "p-tick", n++), 2);
  try {
    await upgraded;
    await sleep(100);
  } finally {
    clearInterval(pump);
  }
  await ack(sender, "echo", "flush");
  for (let k = 0; k < 50 && got.length < n; k++) await sleep(20);
  assert.ok(upgradedAfter > 0, "the upgrade was over before the first broadcast");
  assert.deepEqual(got, Array.from({ length: n }, (_, i) => i));
  assert.equal(s.io.engine.transport.name, "websocket");
});

test("upgrade: mixed clients (polling-only, websocket-only, upgraded) share a room", async () => {
  const p = await connected("/custom", { transports: ["polling"] });
  const w = await connected("/custom", { transports: ["websocket"] });
  const u = client("/custom", { transports: ["polling", "websocket"] });
  const upgraded = once(u.io.engine, "upgrade");
  await once(u, "connect");
  await upgraded;
  assert.equal(p.io.engine.transport.name, "polling");
  assert.equal(w.io.engine.transport.name, "websocket");
  assert.equal(u.io.engine.transport.name, "websocket");
  for (const s of [p, w, u]) assert.deepEqual(await ack(s, "join", "mixed"), [["mixed"]]);

  for (const [k, from] of [p, w, u].entries()) {
    const got = [p, w, u].map((s) => maybe(s, "p-mixed-news", 2000));
    assert.deepEqual(await ack(from, "to-room", "mixed", "p-mixed-news", k, Buffer.from([k])), []);
    for (const g of await Promise.all(got)) {
      assert.equal(g[0], k);
      assert.deepEqual(Buffer.from(g[1]), Buffer.from([k]));
    }
  }

  const others = [w, u].map((s) => maybe(s, "p-bc", 2000));
  const self = maybe(p, "p-bc", 500);
  await ack(p, "broadcast", "p-bc", "from-polling");
  for (const g of await Promise.all(others)) assert.deepEqual(g, ["from-polling"]);
  assert.equal(await self, null);
});
