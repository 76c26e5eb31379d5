// The official socket.io-client (4.x) against `throng serve --app conformance`, over the
// WebSocket transport. Run by tests/sio.rs with THRONG_URL=http://127.0.0.1:PORT.
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const { io } = require("socket.io-client");
const { once, ack, maybe } = require("./helpers");

const URL = process.env.THRONG_URL;
if (!URL) throw new Error("THRONG_URL is not set");

const sockets = [];

function client(nsp = "/", opts = {}) {
  const socket = io(URL + nsp, {
    transports: ["websocket"],
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



test.after(() => {
  for (const s of sockets) s.disconnect();
});

test("connect gives a Socket.IO id distinct from the Engine.IO sid", async () => {
  const s = await connected("/");
  assert.match(s.id, /^[A-Za-z0-9_-]{20}$/);
  assert.notEqual(s.id, s.io.engine.id);
  assert.equal(s.io.engine.transport.name, "websocket");
});

test("echo with an ack returns exactly the arguments", async () => {
  const s = await connected("/");
  const args = [1, "two", { three: [3, null, true] }, "é\u0000\"quoted\""];
  assert.deepEqual(await ack(s, "echo", ...args), args);
  assert.deepEqual(await ack(s, "echo"), []);
});

test("echo without an ack comes back as an event", async () => {
  const s = await connected("/");
  const got = once(s, "echo");
  s.emit("echo", "hello", 42);
  assert.deepEqual(await got, ["hello", 42]);
});

test("binary attachments round-trip, nested and several", async () => {
  const s = await connected("/");
  const a = Buffer.from([1, 2, 3]);
  const b = Buffer.alloc(70000, 7);
  const reply = await ack(s, "echo", a, { nested: { deep: [b] } }, Buffer.alloc(0));
  assert.equal(reply.length, 3);
  assert.deepEqual(Buffer.from(reply[0]), a);
  assert.deepEqual(Buffer.from(reply[1].nested.deep[0]), b);
  assert.equal(Buffer.from(reply[2]).length, 0);
});

test("fifty concurrent acks all come back, each to its own call", async () => {
  const s = await connected("/");
  const replies = await Promise.all(
    Array.from({ length: 50 }, (_, i) => ack(s, "echo", i, `n${i}`))
  );
  replies.forEach((r, i) => assert.deepEqual(r, [i, `n${i}`]));
});

test("namespaces: /custom on the same manager, unknown ones refused", async () => {
  const root = await connected("/");
  // Manager#socket connects at once (autoConnect); calling connect() again would send
  // a second CONNECT, which closes the connection.
  const custom = root.io.socket("/custom");
  sockets.push(custom);
  await once(custom, "connect");
  assert.notEqual(custom.id, root.id);
  const [who] = await ack(custom, "whoami");
  assert.equal(who.nsp, "/custom");
  assert.equal(who.sid, custom.id);

  const nope = client("/nope");
  const [err] = await once(nope, "connect_error");
  assert.equal(err.message, "Invalid namespace");
});

test("/guarded: connect_error with message and data, then a good token", async () => {
  const bad = client("/guarded", { auth: { token: "wrong" } });
  const [err] = await once(bad, "connect_error");
  assert.equal(err.message, "unauthorized");
  assert.deepEqual(err.data, { code: "E_UNAUTHORIZED" });
  const none = client("/guarded");
  const [err2] = await once(none, "connect_error");
  assert.equal(err2.message, "unauthorized");

  const good = await connected("/guarded", { auth: { token: "s3cret" } });
  const [who] = await ack(good, "whoami");
  assert.deepEqual(who.auth, { token: "s3cret" });
  assert.deepEqual(who.rooms, []);
});

test("rooms: join, to-room reaches members (sender too), leave", async () => {
  const [a, b, c] = await Promise.all([connected("/"), connected("/"), connected("/")]);
  assert.deepEqual(await ack(a, "join", "r1"), [["r1"]]);
  assert.deepEqual(await ack(a, "join", "r0"), [["r0", "r1"]]);
  assert.deepEqual(await ack(b, "join", "r1"), [["r1"]]);
  const gotA = maybe(a, "news", 2000);
  const gotB = maybe(b, "news", 2000);
  const gotC = maybe(c, "news", 500);
  assert.deepEqual(await ack(a, "to-room", "r1", "news", 1, { x: "y" }), []);
  assert.deepEqual(await gotA, [1, { x: "y" }]);
  assert.deepEqual(await gotB, [1, { x: "y" }]);
  assert.equal(await gotC, null);

  assert.deepEqual(await ack(b, "leave", "r1"), [[]]);
  const again = maybe(b, "news", 500);
  await ack(a, "to-room", "r1", "news", 2);
  assert.equal(await again, null);
});

test("broadcast reaches all but the sender, to-all everyone", async () => {
  const [a, b] = await Promise.all([connected("/"), connected("/")]);
  const selfGot = maybe(a, "hey", 500);
  const otherGot = maybe(b, "hey", 2000);
  await ack(a, "broadcast", "hey", "there");
  assert.deepEqual(await otherGot, ["there"]);
  assert.equal(await selfGot, null);

  const all = [maybe(a, "all", 2000), maybe(b, "all", 2000)];
  await ack(b, "to-all", "all", 7);
  for (const got of await Promise.all(all)) assert.deepEqual(got, [7]);
});

test("ask: the server's ack request is answered and relayed", async () => {
  const s = await connected("/");
  s.on("question", (x, cb) => cb({ answer: x * 2 }, "extra"));
  assert.deepEqual(await ack(s, "ask", "question", 21), [{ answer: 42 }, "extra"]);
});

test("disconnect-me: io server disconnect for that namespace only", async () => {
  const root = await connected("/");
  // Manager#socket connects at once (autoConnect); calling connect() again would send
  // a second CONNECT, which closes the connection.
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

test("close-me: every namespace gets io server disconnect", async () => {
  const s = await connected("/");
  const gone = once(s, "disconnect");
  s.emit("close-me");
  const [reason] = await gone;
  assert.equal(reason, "io server disconnect");
});

test("drop-transport: transport close, and the client reconnects", async () => {
  const s = await connected("/", { reconnection: true, reconnectionDelay: 100 });
  const gone = once(s, "disconnect");
  s.emit("drop-transport");
  const [reason] = await gone;
  assert.equal(reason, "transport close");
  await once(s, "connect");
  assert.deepEqual(await ack(s, "echo", "back"), ["back"]);
});

test("a room spread over many connections (both cores) gets each message once", async () => {
  const members = await Promise.all(Array.from({ length: 8 }, () => connected("/")));
  for (const m of members) await ack(m, "join", "wide");
  const counts = members.map(() => 0);
  members.forEach((m, i) => m.on("wide-news", () => counts[i]++));
  for (let k = 0; k < 5; k++) await ack(members[k % 8], "to-room", "wide", "wide-news", k);
  await new Promise((r) => setTimeout(r, 300));
  assert.deepEqual(counts, members.map(() => 5));
});

test("one server alone: fetch-sockets, all-rooms, server-count and ask-room", async () => {
  const room = `solo-${Math.random()}`;
  const members = await Promise.all(Array.from({ length: 4 }, () => connected("/")));
  for (const m of members) {
    await ack(m, "join", room);
    m.on("poll", (n, cb) => cb({ id: m.id, n }));
  }
  const ids = members.map((m) => m.id).sort();
  const [found] = await ack(members[0], "fetch-sockets", [room]);
  assert.deepEqual(
    found,
    { sockets: ids.map((id) => ({ id, rooms: [room] })) },
    "every member, on both cores",
  );
  const [{ rooms }] = await ack(members[1], "all-rooms");
  for (const r of [room, ...ids]) assert.ok(rooms.includes(r), r);
  assert.deepEqual(await ack(members[2], "server-count"), [{ count: 1 }]);
  const [asked] = await ack(members[3], "ask-room", room, "poll", 5);
  assert.deepEqual(
    asked.replies.sort((a, b) => (a.id < b.id ? -1 : 1)),
    ids.map((id) => ({ id, n: 5 })),
  );
  // A member that stays silent: an error once the 2 s are up.
  const silent = await connected("/");
  await ack(silent, "join", room);
  const [partial] = await ack(members[0], "ask-room", room, "poll", 6);
  assert.ok(partial.error, JSON.stringify(partial));
});
