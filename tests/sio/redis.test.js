// A mixed cluster on one Redis (tests/redis_bridge.rs starts it): two
// `throng serve --app conformance --redis-url …` (A, B) and Node's socket.io 4.8 with
// @socket.io/redis-adapter 8.x (N, node-server.js), official clients on each, plus an
// @socket.io/redis-emitter 5.x. Broadcasts cross in every direction, reach members
// only, keep per-origin order, carry binary, and namespaces stay apart.
// Env: SERVERS="A=http://…,B=http://…,N=http://…", REDIS_URL=redis://….
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const { once, ack, maybe, connectTo, closeAll, clusterFromEnv } = require("./helpers");

const { SERVERS, REDIS_URL } = clusterFromEnv(["A", "B", "N"]);

function connected(server, nsp = "/", transport = "websocket") {
  return connectTo(SERVERS[server] + nsp, transport);
}

test.afterEach(closeAll);

/// Runs `f` with an @socket.io/redis-emitter on its own Redis client.
async function withEmitter(f) {
  const { createClient } = require("redis");
  const { Emitter } = require("@socket.io/redis-emitter");
  const client = createClient({ url: REDIS_URL });
  await client.connect();
  try {
    await f(new Emitter(client));
  } finally {
    await client.quit();
  }
}

const PAIRS = [
  ["A", "B"],
  ["B", "A"],
  ["A", "N"],
  ["N", "A"],
  ["B", "N"],
];

for (const [from, to] of PAIRS) {
  test(`${from} → ${to}: to-all reaches every host, broadcast spares only the sender`, async () => {
    const sender = await connected(from);
    const peer = await connected(to);
    const tag = `${from}${to}-${Math.random()}`;
    const got = once(peer, "hello");
    const own = once(sender, "hello");
    assert.deepEqual(await ack(sender, "to-all", "hello", tag, { n: 1 }), []);
    assert.deepEqual(await got, [tag, { n: 1 }]);
    assert.deepEqual(await own, [tag, { n: 1 }]);

    const again = once(peer, "bye");
    const notMe = maybe(sender, "bye", 400);
    assert.deepEqual(await ack(sender, "broadcast", "bye", tag), []);
    assert.deepEqual(await again, [tag]);
    assert.equal(await notMe, null, "broadcast came back to its sender");
  });
}

test("to-room reaches the room's members on other hosts, and nobody else", async () => {
  const sender = await connected("A");
  const memberB = await connected("B");
  const memberN = await connected("N");
  const outsider = await connected("B");
  const room = `room-${Math.random()}`;
  await ack(memberB, "join", room);
  await ack(memberN, "join", room);
  const gotB = once(memberB, "news");
  const gotN = once(memberN, "news");
  const nothing = maybe(outsider, "news", 400);
  await ack(sender, "to-room", room, "news", "for members");
  assert.deepEqual(await gotB, ["for members"]);
  assert.deepEqual(await gotN, ["for members"]);
  assert.equal(await nothing, null);
});

test("binary arguments cross hosts both ways, at any depth", async () => {
  for (const [from, to] of [
    ["A", "B"],
    ["A", "N"],
    ["N", "B"],
  ]) {
    const sender = await connected(from);
    const peer = await connected(to);
    const got = once(peer, "bin");
    await ack(sender, "to-all", "bin", Buffer.from([1, 2, 3]), { deep: [Buffer.from("xy")] });
    const [top, nested] = await got;
    assert.deepEqual([...Buffer.from(top)], [1, 2, 3], `${from} → ${to}`);
    assert.equal(Buffer.from(nested.deep[0]).toString(), "xy", `${from} → ${to}`);
  }
});

test("namespaces stay apart across hosts", async () => {
  const sender = await connected("A", "/custom");
  const inCustom = await connected("B", "/custom");
  const inMain = await connected("B", "/");
  const nodeMain = await connected("N", "/");
  const got = once(inCustom, "ns");
  const none1 = maybe(inMain, "ns", 400);
  const none2 = maybe(nodeMain, "ns", 400);
  await ack(sender, "to-all", "ns", "custom only");
  assert.deepEqual(await got, ["custom only"]);
  assert.equal(await none1, null);
  assert.equal(await none2, null);
});

test("broadcasts from one origin arrive in the order sent, on every host", async () => {
  const sender = await connected("A");
  const onB = await connected("B");
  const onN = await connected("N");
  const seen = { B: [], N: [] };
  onB.on("seq", (n) => seen.B.push(n));
  onN.on("seq", (n) => seen.N.push(n));
  const N = 100;
  for (let i = 0; i < N; i++) sender.emit("to-all", "seq", i);
  const deadline = Date.now() + 5000;
  while ((seen.B.length < N || seen.N.length < N) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  const expected = Array.from({ length: N }, (_, i) => i);
  assert.deepEqual(seen.B, expected);
  assert.deepEqual(seen.N, expected);
});

test("the Redis emitter reaches Throng's clients: emit, to, except, of, binary", async () => {
  await withEmitter(async (emitter) => {
    const a = await connected("A");
    const b = await connected("B", "/", "polling");
    const member = await connected("B");
    const custom = await connected("A", "/custom");
    const room = `e-${Math.random()}`;
    await ack(member, "join", room);

    let got = [once(a, "e1"), once(b, "e1"), once(member, "e1")];
    emitter.emit("e1", "all", 1);
    for (const g of got) assert.deepEqual(await g, ["all", 1]);

    const toMember = once(member, "e2");
    const notA = maybe(a, "e2", 400);
    emitter.to(room).emit("e2", "room");
    assert.deepEqual(await toMember, ["room"]);
    assert.equal(await notA, null);

    const toA = once(a, "e3");
    const notMember = maybe(member, "e3", 400);
    emitter.except(room).emit("e3", "not the room");
    assert.deepEqual(await toA, ["not the room"]);
    assert.equal(await notMember, null);

    const inCustom = once(custom, "e4");
    const notMain = maybe(a, "e4", 400);
    emitter.of("/custom").emit("e4", Buffer.from([9, 8]));
    const [bytes] = await inCustom;
    assert.deepEqual([...Buffer.from(bytes)], [9, 8]);
    assert.equal(await notMain, null);
  });
});

test("emitter requests act on Throng's and Node's sockets: socketsJoin, socketsLeave, disconnectSockets, serverSideEmit", async () => {
  await withEmitter(async (emitter) => {
    const a = await connected("A");
    const b = await connected("B", "/", "polling");
    const n = await connected("N");
    const room = `joined-${Math.random()}`;

    // socketsJoin by socket id: only that socket joins, wherever it lives.
    emitter.in(a.id).socketsJoin(room);
    emitter.in(n.id).socketsJoin(room);
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      const [ra] = await ack(a, "whoami").then(([w]) => [w.rooms]);
      const [rn] = await ack(n, "whoami").then(([w]) => [w.rooms]);
      if (ra.includes(room) && rn.includes(room)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual((await ack(a, "whoami"))[0].rooms, [room]);
    assert.deepEqual((await ack(b, "whoami"))[0].rooms, []);
    const toA = once(a, "r");
    const notB = maybe(b, "r", 400);
    emitter.to(room).emit("r", 1);
    assert.deepEqual(await toA, [1]);
    assert.equal(await notB, null);

    // socketsLeave by room.
    emitter.in(room).socketsLeave(room);
    const until = Date.now() + 5000;
    while ((await ack(a, "whoami"))[0].rooms.length && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual((await ack(a, "whoami"))[0].rooms, []);

    // serverSideEmit("relay", event, ...payload): every server emits to its own sockets once.
    const seen = { a: [], b: [], n: [] };
    a.on("relayed", (v) => seen.a.push(v));
    b.on("relayed", (v) => seen.b.push(v));
    n.on("relayed", (v) => seen.n.push(v));
    emitter.serverSideEmit("relay", "relayed", { x: 1 });
    const end = Date.now() + 5000;
    while ((!seen.a.length || !seen.b.length || !seen.n.length) && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(seen, { a: [{ x: 1 }], b: [{ x: 1 }], n: [{ x: 1 }] });

    // disconnectSockets(): the clients see `io server disconnect` (no reconnect).
    const gone = once(a, "disconnect");
    const goneB = once(b, "disconnect");
    emitter.in(a.id).disconnectSockets();
    assert.equal((await gone)[0], "io server disconnect");
    emitter.in(b.id).disconnectSockets(true);
    assert.equal((await goneB)[0], "io server disconnect");
  });
});
