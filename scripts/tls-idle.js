// Holds N idle WebSocket connections to a Throng server, over wss:// (TLS, trusting
// CA_FILE) or ws://, opened CONCURRENCY at a time from source addresses 127.0.0.2..5;
// prints "held N failed M" once all are open, then waits for SIGTERM.
// Used by scripts/bench-tls-idle.sh. Env: URL, N, CA_FILE (wss only), CONCURRENCY.
"use strict";
const fs = require("node:fs");
const WebSocket = require(require.resolve("ws", { paths: [__dirname + "/../tests/sio"] }));

const url = process.env.URL;
const n = Number(process.env.N || 1000);
const concurrency = Number(process.env.CONCURRENCY || 200);
const ca = process.env.CA_FILE ? fs.readFileSync(process.env.CA_FILE) : undefined;
const sockets = [];
let started = 0;
let held = 0;
let failed = 0;

function one() {
  if (started >= n) return;
  const i = started++;
  const ws = new WebSocket(url, { ca, localAddress: `127.0.0.${2 + (i % 4)}`, perMessageDeflate: false });
  ws.on("open", () => {
    held++;
    sockets.push(ws);
    next();
  });
  ws.on("error", () => {
    failed++;
    next();
  });
}

function next() {
  if (held + failed === n) {
    console.log(`held ${held} failed ${failed}`);
    return;
  }
  one();
}

for (let i = 0; i < Math.min(concurrency, n); i++) one();
process.on("SIGTERM", () => process.exit(0));
setInterval(() => {}, 1000);
