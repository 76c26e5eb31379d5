// Requests across the mixed cluster of redis.test.js (tests/redis_bridge.rs starts it):
// two Throng servers (A, B), Node's reference server (N), and a socket.io Server made
// here (T, no listener) on the same Redis with @socket.io/redis-adapter 8.x. T calls
// Node's own APIs (serverCount, fetchSockets, allRooms, serverSideEmitWithAck,
// emitWithAck) on everybody's sockets; clients ask A, B and N the same through the
// conformance contract (fetch-sockets, all-rooms, server-count, ask-servers), so Throng
// both answers Node and asks Node.
// Env: SERVERS="A=http://…,B=http://…,N=http://…", REDIS_URL=redis://….
"use strict";

const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { once, ack, openClient, connectTo, closeAll, clusterFromEnv } = require("./helpers");

const { SERVERS, REDIS_URL } = clusterFromEnv(["A", "B", "N"]);
if (!REDIS_URL) throw new Error("REDIS_URL must be set");

let T;
const redisClients = [];

before(async () => {
  const { Server } = require("socket.io");
  const { createClient } = require("redis");
  const { createAdapter } = require("@socket.io/redis-adapter");
  const pub = createClient({ url: REDIS_URL });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  redisClients.push(pub, sub);
  T = new Server({ adapter: createAdapter(pub, sub) });
  // T answers `local-sockets` on "/" only: on "/custom" it stays silent, so questions
  // asked there wait for it until the timeout.
  T.of("/").on("local-sockets", (reply) => reply([]));
  T.of("/custom");
  // Let the subscriptions land before anyone counts them.
  await new Promise((r) => setTimeout(r, 300));
});

after(async () => {
  // T never listened (no engine to close): its adapters unsubscribe, then Redis goes.
  for (const nsp of ["/", "/custom"]) T.of(nsp).adapter.close();
  await Promise.all(redisClients.map((c) => c.quit()));
});

test.afterEach(closeAll);

function connected(server, nsp = "/", opts = {}) {
  if (opts.auth) {
    const socket = openClient(SERVERS[server] + nsp, { transports: ["websocket"], ...opts });
    return once(socket, "connect").then(() => socket);
  }
  return connectTo(SERVERS[server] + nsp, opts.transport || "websocket");
}

/// Emits with an ack and waits up to `ms` (longer than `ack`'s 5 s).
function slowAck(socket, ms, ...args) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ack for ${args[0]}`)), ms);
    socket.emit(...args, (...reply) => {
      clearTimeout(timer);
      resolve(reply);
    });
  });
}

test("every Throng process is counted once by Node's serverCount, and counts the others", async () => {
  assert.equal(await T.of("/").adapter.serverCount(), 4, "A, B, N and T");
  for (const server of ["A", "B", "N"]) {
    const client = await connected(server);
    assert.deepEqual(await ack(client, "server-count"), [{ count: 4 }], server);
  }
});

test("Node's fetchSockets returns Throng's sockets with their rooms, auth and handshake", async () => {
  const room = `fetch-${Math.random()}`;
  const a = await connected("A", "/", { auth: { token: "t-a" } });
  const aPolling = await connected("A", "/", { transport: "polling" });
  const b = await connected("B");
  const n = await connected("N");
  const outside = await connected("B");
  for (const s of [a, aPolling, b, n]) await ack(s, "join", room);
  const want = [a.id, aPolling.id, b.id, n.id].sort();

  const found = await T.in(room).fetchSockets();
  assert.deepEqual(found.map((s) => s.id).sort(), want);
  assert.ok(!found.some((s) => s.id === outside.id));
  const fromA = found.find((s) => s.id === a.id);
  assert.deepEqual([...fromA.rooms].sort(), [a.id, room].sort());
  assert.deepEqual(fromA.handshake.auth, { token: "t-a" });
  assert.equal(typeof fromA.handshake.issued, "number");
  assert.ok(Math.abs(Date.now() - fromA.handshake.issued) < 60_000, "issued is recent");
  assert.ok(!Number.isNaN(Date.parse(fromA.handshake.time)), fromA.handshake.time);
  assert.deepEqual(fromA.data, {});
  // A RemoteSocket of Throng's acts through the bus: join, emit, leave.
  const extra = `extra-${Math.random()}`;
  fromA.join(extra);
  await new Promise((r) => setTimeout(r, 300));
  const rooms = await ack(a, "whoami");
  assert.ok(rooms[0].rooms.includes(extra), JSON.stringify(rooms));

  // And the same question asked of each server through the contract.
  const expected = (await T.in(room).fetchSockets())
    .map((s) => ({ id: s.id, rooms: [...s.rooms].filter((r) => r !== s.id).sort() }))
    .sort((x, y) => (x.id < y.id ? -1 : 1));
  for (const [server, client] of [
    ["A", a],
    ["B", b],
    ["N", n],
  ]) {
    const [reply] = await ack(client, "fetch-sockets", [room]);
    assert.deepEqual(reply, { sockets: expected }, `asked of ${server}`);
  }
  // No rooms: the whole namespace, our sockets among them.
  const [all] = await ack(b, "fetch-sockets", []);
  for (const id of [...want, outside.id]) {
    assert.ok(all.sockets.some((s) => s.id === id), `${id} in ${JSON.stringify(all)}`);
  }
});

test("allRooms spans every server, whichever asks", async () => {
  const tag = Math.random();
  const a = await connected("A");
  const b = await connected("B");
  const n = await connected("N");
  await ack(a, "join", `ra-${tag}`);
  await ack(b, "join", `rb-${tag}`);
  await ack(n, "join", `rn-${tag}`);
  const want = [`ra-${tag}`, `rb-${tag}`, `rn-${tag}`];
  const fromT = await T.of("/").adapter.allRooms();
  for (const r of [...want, a.id, b.id, n.id]) assert.ok(fromT.has(r), `${r} from T`);
  for (const [server, client] of [
    ["A", a],
    ["B", b],
    ["N", n],
  ]) {
    const [{ rooms }] = await ack(client, "all-rooms");
    for (const r of want) assert.ok(rooms.includes(r), `${r} asked of ${server}`);
  }
});

test("serverSideEmit with an ack gets one answer from every other server", async () => {
  const a = await connected("A");
  const b = await connected("B");
  const n = await connected("N");
  // From Node: A, B and N answer with their local sockets.
  const replies = await T.serverSideEmitWithAck("local-sockets");
  assert.equal(replies.length, 3, JSON.stringify(replies));
  const everyone = replies.flat();
  for (const s of [a, b, n]) assert.ok(everyone.includes(s.id), `${s.id} answered for`);
  // From Throng A: B, N and T answer (T with []).
  const [fromA] = await ack(a, "ask-servers", "local-sockets");
  assert.equal(fromA.replies.length, 3, JSON.stringify(fromA));
  const seen = fromA.replies.flat();
  assert.ok(seen.includes(b.id) && seen.includes(n.id), JSON.stringify(fromA));
  assert.ok(!seen.includes(a.id), "A does not answer its own question");
});

test("a server that never answers: the asker gets what came and an error after the timeout", async () => {
  const a = await connected("A", "/custom");
  // On /custom, T has no `local-sockets` handler: B and N answer, T does not.
  const [reply] = await slowAck(a, 9000, "ask-servers", "local-sockets");
  assert.match(reply.error, /timeout reached: only 2 responses received out of 3/);
});

test("Node's broadcast with an ack reaches Throng's clients and gathers their acks", async () => {
  const room = `acks-${Math.random()}`;
  const clients = [
    await connected("A"),
    await connected("A", "/", { transport: "polling" }),
    await connected("B"),
    await connected("N"),
  ];
  for (const c of clients) {
    await ack(c, "join", room);
    c.on("count-me", (n, reply) => reply({ id: c.id, n }));
  }
  const replies = await T.to(room).timeout(4000).emitWithAck("count-me", 7);
  assert.deepEqual(
    replies.map((r) => r.id).sort(),
    clients.map((c) => c.id).sort(),
  );
  assert.ok(replies.every((r) => r.n === 7));
  // The same asked of each server through the contract: A and B ask Node's and each
  // other's clients, N asks Throng's.
  for (const [server, asker] of [
    ["A", clients[0]],
    ["B", clients[2]],
    ["N", clients[3]],
  ]) {
    const [reply] = await ack(asker, "ask-room", room, "count-me", 3);
    assert.ok(!reply.error, `${server}: ${JSON.stringify(reply)}`);
    assert.deepEqual(
      reply.replies.map((r) => r.id).sort(),
      clients.map((c) => c.id).sort(),
      `asked of ${server}`,
    );
  }
  // A client that stays silent: the others' replies, and an error after the timeout.
  const silent = await connected("B");
  await ack(silent, "join", room);
  const [partial] = await ack(clients[0], "ask-room", room, "count-me", 4);
  assert.ok(partial.error, JSON.stringify(partial));
  // Nobody in the room: an empty answer, quickly, once every server has said 0.
  const started = Date.now();
  assert.deepEqual(await T.to(`empty-${room}`).timeout(4000).emitWithAck("count-me", 1), []);
  assert.ok(Date.now() - started < 3000, "every server reported its count");
});
