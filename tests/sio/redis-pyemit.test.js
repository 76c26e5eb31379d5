// An emitter in another language: `socket.io-emitter` from PyPI (Python, tests/py/emit.py)
// publishes on the Redis bus of a Throng node (tests/redis_bridge.rs starts both), in the
// classic format; Throng's clients get what it emits, rooms and namespaces respected.
// Env: SERVERS="A=http://…", REDIS_URL=redis://…, PYTHON (the venv's interpreter).
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const { execFileSync } = require("node:child_process");
const path = require("node:path");
const { once, ack, maybe, connectTo, closeAll, clusterFromEnv } = require("./helpers");

const { SERVERS, REDIS_URL } = clusterFromEnv(["A"]);
const PYTHON = process.env.PYTHON;
if (!REDIS_URL || !PYTHON) throw new Error("REDIS_URL and PYTHON must be set");
const redis = new URL(REDIS_URL);

function pyEmit(namespace, room, event, ...args) {
  execFileSync(
    PYTHON,
    [
      path.join(__dirname, "..", "py", "emit.py"),
      redis.hostname,
      redis.port,
      namespace,
      room,
      event,
      JSON.stringify(args),
    ],
    { timeout: 10000 },
  );
}

test.afterEach(closeAll);

test("the Python emitter's broadcasts reach Throng's sockets, by namespace and room", async () => {
  const all = await connectTo(SERVERS.A + "/");
  const member = await connectTo(SERVERS.A + "/", "polling");
  const custom = await connectTo(SERVERS.A + "/custom");
  await ack(member, "join", "py-room");

  const everyone = [once(all, "hello"), once(member, "hello")];
  const notCustom = maybe(custom, "hello", 400);
  pyEmit("/", "", "hello", "from python", { n: 1, list: [1, 2] });
  for (const got of everyone) assert.deepEqual(await got, ["from python", { n: 1, list: [1, 2] }]);
  assert.equal(await notCustom, null, "another namespace got it");

  const inRoom = once(member, "room-news");
  const outside = maybe(all, "room-news", 400);
  pyEmit("/", "py-room", "room-news", 42);
  assert.deepEqual(await inRoom, [42]);
  assert.equal(await outside, null, "a non-member got a room broadcast");

  const there = once(custom, "custom-news");
  pyEmit("/custom", "", "custom-news", "ok");
  assert.deepEqual(await there, ["ok"]);
});
