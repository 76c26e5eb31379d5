// Sharded pub/sub (Redis 7 SPUBLISH/SSUBSCRIBE): two `throng serve --redis-mode sharded`
// (A, B) and Node's reference server with `createShardedAdapter` (N) on one Redis
// (tests/redis_bridge.rs starts them). Broadcasts, room broadcasts (each public room
// on its own channel), binary, and the requests the cluster adapter makes cross both
// ways.
// Env: SERVERS="A=http://…,B=http://…,N=http://…".
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const { once, ack, maybe, connectTo, closeAll, clusterFromEnv } = require("./helpers");

const { SERVERS } = clusterFromEnv(["A", "B", "N"]);

function connected(server, nsp = "/") {
  return connectTo(SERVERS[server] + nsp, "websocket");
}

/// Room subscriptions follow joins asynchronously (SSUBSCRIBE), in Node as here.
const settle = () => new Promise((r) => setTimeout(r, 300));

test.afterEach(closeAll);

for (const [from, to] of [
  ["A", "B"],
  ["A", "N"],
  ["N", "A"],
  ["B", "N"],
]) {
  test(`${from} → ${to}: to-all and broadcast cross`, async () => {
    const sender = await connected(from);
    const peer = await connected(to);
    const tag = `${from}${to}-${Math.random()}`;
    const got = once(peer, "hello");
    assert.deepEqual(await ack(sender, "to-all", "hello", tag, { n: 1 }), []);
    assert.deepEqual(await got, [tag, { n: 1 }]);
    const again = once(peer, "bye");
    const notMe = maybe(sender, "bye", 400);
    assert.deepEqual(await ack(sender, "broadcast", "bye", tag), []);
    assert.deepEqual(await again, [tag]);
    assert.equal(await notMe, null, "broadcast came back to its sender");
  });
}

test("a room broadcast reaches members on every host, on the room's own channel", async () => {
  const room = `room-${Math.random()}`.slice(0, 12);
  const senders = { A: await connected("A"), N: await connected("N") };
  const members = [await connected("A"), await connected("B"), await connected("N")];
  const outsider = await connected("B");
  for (const m of members) await ack(m, "join", room);
  await settle();
  for (const [name, sender] of Object.entries(senders)) {
    const got = members.map((m) => once(m, "news"));
    const nothing = maybe(outsider, "news", 400);
    await ack(sender, "to-room", room, "news", `from ${name}`);
    for (const g of got) assert.deepEqual(await g, [`from ${name}`]);
    assert.equal(await nothing, null, "an outsider got a room broadcast");
  }
  // After leaving, B's member is no longer reached (and B drops the channel).
  await ack(members[1], "leave", room);
  await settle();
  const gone = maybe(members[1], "later", 400);
  const still = once(members[2], "later");
  await ack(senders.A, "to-room", room, "later");
  assert.deepEqual(await still, []);
  assert.equal(await gone, null);
});

test("binary crosses as binary both ways (msgpack on the wire)", async () => {
  for (const [from, to] of [
    ["A", "N"],
    ["N", "B"],
  ]) {
    const sender = await connected(from);
    const peer = await connected(to);
    const got = once(peer, "bin");
    await ack(sender, "to-all", "bin", Buffer.from([1, 2, 3]), { nested: Buffer.from([9]) });
    const [buf, obj] = await got;
    assert.deepEqual([...buf], [1, 2, 3], `${from} → ${to}`);
    assert.deepEqual([...obj.nested], [9]);
  }
});

test("requests: serverCount, fetchSockets, serverSideEmit and broadcast with acks", async () => {
  const room = `req-${Math.random()}`.slice(0, 12);
  const clients = [await connected("A"), await connected("B"), await connected("N")];
  for (const c of clients) {
    await ack(c, "join", room);
    c.on("count-me", (n, reply) => reply({ id: c.id, n }));
  }
  await settle();
  const ids = clients.map((c) => c.id).sort();
  for (const [i, server] of ["A", "B", "N"].entries()) {
    const asker = clients[i];
    assert.deepEqual(await ack(asker, "server-count"), [{ count: 3 }], server);
    const [found] = await ack(asker, "fetch-sockets", [room]);
    assert.deepEqual(
      found,
      { sockets: ids.map((id) => ({ id, rooms: [room] })) },
      `fetch-sockets asked of ${server}`,
    );
    const [{ replies, error }] = await ack(asker, "ask-servers", "local-sockets");
    assert.equal(error, undefined, `ask-servers asked of ${server}`);
    assert.equal(replies.length, 2, JSON.stringify(replies));
    const [asked] = await ack(asker, "ask-room", room, "count-me", i);
    assert.equal(asked.error, undefined, `ask-room asked of ${server}: ${JSON.stringify(asked)}`);
    assert.deepEqual(asked.replies.map((r) => r.id).sort(), ids, `ask-room asked of ${server}`);
  }
});
