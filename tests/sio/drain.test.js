// A rolling deploy with the official socket.io-client (4.x): clients on server A
// (WebSocket, polling, and polling upgraded to WebSocket); server B starts on the same
// port (SO_REUSEPORT); A is drained through its admin port. Every client must see a
// transport close (never "io server disconnect", after which it would stay away),
// reconnect by itself, and land on B (A accepts no more), where its events work.
// Run by tests/drain.rs with THRONG_URL, ADMIN_URL (A's), THRONG_BIN, NEXT_ADMIN_PORT.
"use strict";

const { test, after } = require("node:test");
const assert = require("node:assert/strict");
const { spawn } = require("node:child_process");
const { io } = require("socket.io-client");
const { once, ack } = require("./helpers");

const URL = process.env.THRONG_URL;
const ADMIN = process.env.ADMIN_URL;
const BIN = process.env.THRONG_BIN;
const NEXT_ADMIN_PORT = process.env.NEXT_ADMIN_PORT;
if (!URL || !ADMIN || !BIN || !NEXT_ADMIN_PORT) {
  throw new Error("THRONG_URL, ADMIN_URL, THRONG_BIN and NEXT_ADMIN_PORT must be set");
}
const PORT = new globalThis.URL(URL).port;
const NEXT_ADMIN = `http://127.0.0.1:${NEXT_ADMIN_PORT}`;

const sockets = [];
let next = null;

after(() => {
  for (const s of sockets) s.disconnect();
  if (next) next.kill("SIGKILL");
});

function client(opts) {
  const socket = io(URL, {
    forceNew: true,
    reconnection: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 500,
    timeout: 5000,
    ...opts,
  });
  sockets.push(socket);
  return socket;
}

/// GET `url`, resolving with the status (0 when nothing answers); bounded by 2 s.
async function status(url, method = "GET") {
  try {
    const res = await fetch(url, { method, signal: AbortSignal.timeout(2000) });
    await res.text();
    return res.status;
  } catch {
    return 0;
  }
}

/// Polls `url` every 50 ms until it answers `want`, for at most `ms`.
async function until(url, want, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const got = await status(url);
    if (got === want) return;
    if (Date.now() > deadline) throw new Error(`${url}: ${got}, not ${want}, after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/// Resolves with the disconnect reason and then the reconnection, bounded.
function leavesAndComesBack(socket, ms = 15000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no disconnect + reconnect")), ms);
    socket.once("disconnect", (reason, details) => {
      socket.once("connect", () => {
        clearTimeout(timer);
        // Anything but a clean close carries what the client saw (e.g. "xhr post
        // error", an HTTP status), for the failure message.
        const seen = [details?.message, details?.context?.status].filter(Boolean).join(" ");
        resolve(reason === "transport close" ? reason : `${reason} (${seen})`);
      });
    });
  });
}

test("every client reconnects to the next server after a drain", async () => {
  const ws = client({ transports: ["websocket"] });
  const polling = client({ transports: ["polling"] });
  const upgraded = client({});
  await Promise.all([once(ws, "connect"), once(polling, "connect"), once(upgraded, "connect")]);
  if (upgraded.io.engine.transport.name !== "websocket") {
    await once(upgraded.io.engine, "upgrade");
  }
  for (const s of [ws, polling, upgraded]) {
    assert.deepEqual(await ack(s, "echo", "on A"), ["on A"]);
  }
  const before = [ws, polling, upgraded].map((s) => s.id);

  // B on the same port, before A drains: from now on the kernel spreads new
  // connections over both listeners, and over B's alone once A stops accepting.
  next = spawn(
    BIN,
    ["serve", "--host", "127.0.0.1", "--port", PORT, "--app", "conformance", "--workers", "2",
      "--admin-port", NEXT_ADMIN_PORT],
    { stdio: "ignore" },
  );
  await until(`${NEXT_ADMIN}/healthz`, 200);

  const journeys = [ws, polling, upgraded].map((s) => leavesAndComesBack(s));
  // (A may be gone as soon as its few clients are told: /readyz while draining is
  // tests/drain.rs's post_admin_drain_on_the_admin_port_drains_and_readyz_says_so.)
  assert.equal(await status(`${ADMIN}/admin/drain`, "POST"), 202);
  const reasons = await Promise.all(journeys);
  for (const [i, reason] of reasons.entries()) {
    assert.equal(reason, "transport close", `client ${["ws", "polling", "upgraded"][i]}: disconnect reason ${reason}`);
  }
  // Wait for A to be gone (its admin port closes when it exits): then every
  // client must be on B.
  await until(`${ADMIN}/healthz`, 0, 10000);
  for (const [i, s] of [ws, polling, upgraded].entries()) {
    assert.ok(s.connected, `client ${i} connected`);
    assert.notEqual(s.id, before[i], "a new session");
    assert.deepEqual(await ack(s, "echo", "on B"), ["on B"]);
  }
  const metrics = await (await fetch(`${NEXT_ADMIN}/metrics`)).text();
  const open = Number(/^throng_connections_open (\d+)$/m.exec(metrics)?.[1]);
  assert.ok(open >= 3, `B holds ${open} connections:\n${metrics}`);
});
