// Two Throng nodes on a Redis bus that comes and goes (tests/redis_bridge.rs):
// PHASE=down: each node still delivers its own broadcasts locally (and nothing crosses);
// PHASE=up: broadcasts cross again once the bridges have reconnected (within 10 s);
// what was queued while Redis was away may cross first.
// PHASE=flood: 2,000 broadcasts of 1 KiB while Redis is paused: every one is delivered
// locally, in order (the bridge drops what does not fit its queue, never local ones).
// PHASE=killflood: 3,000 broadcasts over about 3 s while the test kills Redis (SIGKILL)
// and starts it again on the same port: every one is delivered locally, in order; what
// crossed kept its order; crossing is back within 10 s of the restart.
// Env: SERVERS="A=http://…,B=http://…", PHASE=down|up|flood|killflood.
"use strict";

const { test } = require("node:test");
const assert = require("node:assert/strict");
const { once, ack, maybe, connectTo, closeAll, clusterFromEnv } = require("./helpers");

const { SERVERS } = clusterFromEnv(["A", "B"]);
const PHASE = process.env.PHASE;
if (!["down", "up", "flood", "killflood"].includes(PHASE)) {
  throw new Error("PHASE=down|up|flood|killflood must be set");
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function connected(server) {
  return connectTo(SERVERS[server]);
}

test.after(closeAll);

test("flood while Redis is paused: local delivery loses nothing", { skip: PHASE !== "flood" }, async () => {
  const sender = await connected("A");
  const local = await connected("A");
  const N = 2000;
  const pad = "x".repeat(1024);
  const seen = [];
  local.on("f", (i) => seen.push(i));
  for (let i = 0; i < N; i++) sender.emit("to-all", "f", i, pad);
  const deadline = Date.now() + 20000;
  while (seen.length < N && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.deepEqual(seen, Array.from({ length: N }, (_, i) => i));
});

test("Redis killed and restarted mid-flood: every local message, in order", { skip: PHASE !== "killflood" }, async () => {
  const sender = await connected("A");
  const local = await connected("A");
  const remote = await connected("B");
  const N = 3000;
  const seen = [];
  const crossed = [];
  local.on("k", (i) => seen.push(i));
  remote.on("k", (i) => crossed.push(i));
  for (let i = 0; i < N; i++) {
    sender.emit("to-all", "k", i);
    if (i % 50 === 49) await sleep(50);
  }
  const deadline = Date.now() + 20000;
  while (seen.length < N && Date.now() < deadline) await sleep(20);
  assert.deepEqual(seen, Array.from({ length: N }, (_, i) => i));
  for (let i = 1; i < crossed.length; i++) {
    assert.ok(crossed[i] > crossed[i - 1], `crossed out of order at ${i}: ${crossed[i - 1]}, ${crossed[i]}`);
  }
  // Crossing comes back (Redis restarted about 2 s in; backoff is at most 5 s).
  const after = [];
  remote.on("after", (j) => after.push(j));
  const back = Date.now() + 12000;
  for (let j = 0; after.length === 0; j++) {
    assert.ok(Date.now() < back, "broadcasts did not cross again within 10 s of the restart");
    await ack(sender, "to-all", "after", j);
    await sleep(300);
  }
});

test(`redis ${PHASE}: local delivery goes on; crossing ${PHASE === "up" ? "resumes" : "stops"}`, { skip: PHASE === "flood" || PHASE === "killflood" }, async () => {
  const sender = await connected("A");
  const local = await connected("A");
  const remote = await connected("B");
  if (PHASE === "down") {
    const got = once(local, "m");
    const crossed = maybe(remote, "m", 500);
    assert.deepEqual(await ack(sender, "to-all", "m", "local"), []);
    assert.deepEqual(await got, ["local"]);
    assert.equal(await crossed, null);
    return;
  }
  // Up: retry until a broadcast crosses (the bridges back off up to 5 s). What was
  // queued during the outage ("local", within --redis-queue-bytes) may cross first.
  const crossed = [];
  remote.on("m", (v) => crossed.push(v));
  const deadline = Date.now() + 10000;
  for (let i = 0; ; i++) {
    const got = once(local, "m");
    await ack(sender, "to-all", "m", i);
    assert.deepEqual(await got, [i]);
    await new Promise((r) => setTimeout(r, 300));
    if (crossed.some((v) => typeof v === "number")) {
      assert.ok(crossed.every((v) => v === "local" || typeof v === "number"), crossed);
      return;
    }
    assert.ok(Date.now() < deadline, "broadcasts did not cross within 10 s of Redis coming back");
  }
});
