// The official socket.io-client (4.x) over TLS: `wss://` from the start, HTTPS
// long-polling, and polling upgraded to `wss://`, against `throng serve --app
// conformance --tls-cert ... --workers 2`. Run by tests/tls.rs with THRONG_URL
// (https://127.0.0.1:PORT) and CA_FILE (the self-signed certificate the server uses).
"use strict";

const { test, after } = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const { io } = require("socket.io-client");
const { once, ack } = require("./helpers");

const URL = process.env.THRONG_URL;
const CA_FILE = process.env.CA_FILE;
if (!URL || !CA_FILE) throw new Error("THRONG_URL and CA_FILE must be set");
const ca = fs.readFileSync(CA_FILE);

const sockets = [];
after(() => {
  for (const s of sockets) s.disconnect();
});

function client(opts) {
  const socket = io(URL, { forceNew: true, reconnection: false, timeout: 5000, ca, ...opts });
  sockets.push(socket);
  return socket;
}

for (const [name, opts] of [
  ["websocket", { transports: ["websocket"] }],
  ["polling", { transports: ["polling"] }],
  ["polling upgraded to websocket", {}],
]) {
  test(`${name} over TLS: connect, acks, events, binary`, async () => {
    const socket = client(opts);
    await once(socket, "connect");
    if (name.includes("upgraded") && socket.io.engine.transport.name !== "websocket") {
      await once(socket.io.engine, "upgrade");
    }
    for (let i = 0; i < 20; i++) {
      assert.deepEqual(await ack(socket, "echo", `#${i}`, { n: i }), [`#${i}`, { n: i }]);
    }
    const big = "y".repeat(200_000);
    assert.deepEqual(await ack(socket, "echo", big), [big]);
    const bin = Buffer.from([1, 2, 3, 250]);
    const [back] = await ack(socket, "echo", bin);
    assert.ok(Buffer.from(back).equals(bin));
  });
}

test("a client that does not trust the certificate is refused", async () => {
  const socket = client({ transports: ["websocket"], ca: undefined });
  const [err] = await once(socket, "connect_error");
  assert.match(String(err?.description?.message ?? err?.message ?? err), /certificate|self.signed|websocket error/i);
});
