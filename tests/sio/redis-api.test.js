// Throng's `Io` handle acting on a Node server's sockets over Redis
// (tests/redis_bridge.rs serves a Rust-API app "T" beside Node's socket.io "N" with
// @socket.io/redis-adapter): socketsJoin, socketsLeave, disconnectSockets and
// serverSideEmit issued by Throng, carried out by Node (and by Throng itself).
// Env: SERVERS="T=http://…,N=http://…".
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const { once, ack, maybe, connectTo, closeAll, clusterFromEnv } = require("./helpers");

const { SERVERS } = clusterFromEnv(["T", "N"]);

test.after(closeAll);

async function roomsOf(socket) {
  return (await ack(socket, "whoami"))[0].rooms;
}

/// Polls `f` until it returns true, at most 5 s.
async function eventually(f) {
  const deadline = Date.now() + 5000;
  while (!(await f())) {
    assert.ok(Date.now() < deadline, "not within 5 s");
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("Throng's Io: socketsJoin/Leave, serverSideEmit and disconnectSockets reach Node's sockets", async () => {
  const t = await connectTo(SERVERS.T);
  const n1 = await connectTo(SERVERS.N);
  const n2 = await connectTo(SERVERS.N);
  const room = `io-${Math.random()}`;

  assert.deepEqual(await ack(t, "join-all", room), [true]);
  await eventually(async () => (await roomsOf(n1)).includes(room));
  assert.deepEqual(await roomsOf(n2), [room]);

  assert.deepEqual(await ack(t, "leave-all", room), [true]);
  await eventually(async () => (await roomsOf(n1)).length === 0);
  assert.deepEqual(await roomsOf(n2), []);

  const told = once(n1, "relayed");
  const notSelf = maybe(t, "relayed", 500);
  assert.deepEqual(await ack(t, "tell-servers", "relayed", { y: 2 }), [true]);
  assert.deepEqual(await told, [{ y: 2 }]);
  assert.equal(await notSelf, null, "serverSideEmit came back to its own server");

  const kicked = once(n1, "disconnect");
  const stays = maybe(n2, "disconnect", 500);
  assert.deepEqual(await ack(t, "kick", n1.id), [true]);
  assert.equal((await kicked)[0], "io server disconnect");
  assert.equal(await stays, null);
});

test("a dynamic namespace is counted, and answers, while it has a socket here", async () => {
  const { Server } = require("socket.io");
  const { createClient } = require("redis");
  const { createAdapter } = require("@socket.io/redis-adapter");
  const pub = createClient({ url: process.env.REDIS_URL });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  const node = new Server({ adapter: createAdapter(pub, sub) });
  const nsp = node.of("/dyn-7");
  try {
    await eventually(async () => (await nsp.adapter.serverCount()) === 1);
    const t = await connectTo(SERVERS.T + "/dyn-7");
    // Throng subscribes once the namespace has its first socket here.
    await eventually(async () => (await nsp.adapter.serverCount()) === 2);
    const found = await nsp.fetchSockets();
    assert.deepEqual(found.map((s) => s.id), [t.id]);
    t.disconnect();
    // And leaves the bus's count with its last socket.
    await eventually(async () => (await nsp.adapter.serverCount()) === 1);
  } finally {
    nsp.adapter.close();
    await Promise.all([pub.quit(), sub.quit()]);
  }
});
