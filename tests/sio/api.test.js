// The official socket.io-client (4.x) against a server built with Throng's Rust API
// (tests/sio.rs, `api_server`): dynamic namespaces, deferred middleware, acks answered
// later from another thread, and an `Io` handle emitting from outside any handler.
// Every case runs over both transports: websocket, and polling (upgrade off, so that
// every request is a fresh TCP connection that may land on either of the two workers).
// Run by tests/sio.rs with THRONG_URL=http://127.0.0.1:PORT.
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const { once, outcome, ack, openClient, closeAll } = require("./helpers");

const URL = process.env.THRONG_URL;
if (!URL) throw new Error("THRONG_URL is not set");

const TRANSPORTS = {
  websocket: { transports: ["websocket"] },
  polling: { transports: ["polling"], upgrade: false },
};

function client(nsp, transport, opts = {}) {
  return openClient(URL + nsp, { ...TRANSPORTS[transport], ...opts });
}

test.afterEach(closeAll);

for (const transport of Object.keys(TRANSPORTS)) {
  test(`${transport}: a dynamic namespace is made by its first CONNECT and handlers see its name`, async () => {
    const a = client("/room-7", transport);
    assert.equal(await outcome(a), "connect");
    const b = client("/room-7", transport);
    assert.equal(await outcome(b), "connect");
    assert.deepEqual(await ack(a, "where"), ["/room-7"]);
    // Namespace-wide broadcast stays inside this dynamic namespace.
    const other = client("/room-8", transport);
    assert.equal(await outcome(other), "connect");
    let leaked = false;
    other.on("shout", () => (leaked = true));
    const got = once(b, "shout");
    assert.deepEqual(await ack(a, "shout", "hi"), []);
    assert.deepEqual(await got, ["hi"]);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(leaked, false, "a broadcast crossed into another dynamic namespace");
  });

  test(`${transport}: names no matcher takes are refused as Invalid namespace`, async () => {
    const s = client("/room-x", transport);
    const err = await outcome(s);
    assert.equal(err.message, "Invalid namespace");
  });

  test(`${transport}: deferred middleware answers from another thread`, async () => {
    const ok = client("/deferred", transport, { auth: { token: "s3cret" } });
    assert.equal(await outcome(ok), "connect");
    assert.deepEqual(await ack(ok, "where"), ["/deferred"]);

    const bad = client("/deferred", transport, { auth: { token: "nope" } });
    const err = await outcome(bad);
    assert.equal(err.message, "unauthorized");
    assert.deepEqual(err.data, { code: "E_LATER" });

    // The middleware drops its PendingConnect without answering.
    const dropped = client("/deferred", transport, { auth: { token: "drop" } });
    const err2 = await outcome(dropped);
    assert.equal(err2.message, "middleware gave no answer");
  });

  test(`${transport}: an ack kept by the handler is answered later by another thread`, async () => {
    const s = client("/", transport);
    assert.equal(await outcome(s), "connect");
    const replies = await Promise.all(
      Array.from({ length: 20 }, (_, i) => ack(s, "later", i)),
    );
    replies.forEach((r, i) => assert.deepEqual(r, ["done", i]));
  });

  test(`${transport}: Bin values in a Serialize tuple arrive as binary, at any depth`, async () => {
    const s = client("/", transport);
    assert.equal(await outcome(s), "connect");
    const [top, json, list] = await ack(s, "bin");
    assert.deepEqual([...Buffer.from(top)], [0, 1, 255]);
    assert.deepEqual(json, { n: 1 });
    assert.equal(Buffer.from(list[0]).toString(), "xyz");
  });

  test(`${transport}: Io emits from outside any handler, to a room and to one socket`, async () => {
    const s = client("/", transport);
    assert.equal(await outcome(s), "connect");
    const idle = client("/", transport);
    assert.equal(await outcome(idle), "connect");
    let idleTicks = 0;
    idle.on("tick", () => idleTicks++);
    assert.deepEqual(await ack(s, "subscribe"), []);
    const [n] = await once(s, "tick");
    assert.equal(typeof n, "number");
    // A thread pokes this socket by its id.
    const poked = once(s, "poked");
    assert.deepEqual(await ack(s, "poke-me"), []);
    assert.deepEqual(await poked, [s.id]);
    assert.equal(idleTicks, 0, "a socket outside the room got a tick");
  });
}
