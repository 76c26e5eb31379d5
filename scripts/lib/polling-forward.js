// Load for scripts/bench-polling-forward.sh: CLIENTS official socket.io-clients on
// long-polling only, each sending `echo` with an ack back to back for SECS seconds, through
// a small proxy made here that sends every handshake to OWNER and every later request
// to VIA. VIA = OWNER: every request is served where its session lives (local); VIA =
// another node: every request after the handshake is forwarded over Redis to OWNER.
// TRANSPORT=websocket: the clients upgrade, and the proxy sends the upgrade to VIA too
// (VIA = OWNER: a local WebSocket; another node: the session is handed over to VIA, or,
// with UPGRADE_DELAY_MS past the owner's hold on the first CONNECT, relayed to OWNER over
// Redis), so that the acks run over the WebSocket.
// Prints one JSON line: acks/s, HTTP requests/s through the proxy, ack latency p50/p99,
// time from io() to "connect" p50/p99.
"use strict";

const http = require("node:http");
const net = require("node:net");
const { io } = require("socket.io-client");

const [owner, via] = [process.env.OWNER, process.env.VIA].map((u) => new URL(u));
const CLIENTS = Number(process.env.CLIENTS || 50);
const SECS = Number(process.env.SECS || 10);
const WARMUP = Number(process.env.WARMUP || 2);
const UPGRADE = process.env.TRANSPORT === "websocket";
const UPGRADE_DELAY_MS = Number(process.env.UPGRADE_DELAY_MS || 0);

let requests = 0;
const proxy = http.createServer((req, res) => {
  const target = req.url.includes("sid=") ? via : owner;
  requests++;
  const out = http.request(
    { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
    (answer) => {
      res.writeHead(answer.statusCode, answer.headers);
      answer.pipe(res);
    },
  );
  out.on("error", () => {
    res.writeHead(502);
    res.end();
  });
  req.pipe(out);
});

// Upgrades go to VIA as raw bytes.
proxy.on("upgrade", async (req, socket, head) => {
  socket.pause();
  await new Promise((r) => setTimeout(r, UPGRADE_DELAY_MS));
  socket.resume();
  const up = net.connect({ host: via.hostname, port: Number(via.port) }, () => {
    const lines = [`${req.method} ${req.url} HTTP/1.1`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) {
      lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
    }
    up.write(lines.join("\r\n") + "\r\n\r\n");
    up.write(head);
    up.pipe(socket);
    socket.pipe(up);
  });
  up.on("error", () => socket.destroy());
  socket.on("error", () => up.destroy());
});

proxy.listen(0, "127.0.0.1", async () => {
  const url = `http://127.0.0.1:${proxy.address().port}/`;
  const transports = UPGRADE ? ["polling", "websocket"] : ["polling"];
  const connectMs = [];
  const clients = await Promise.all(
    Array.from({ length: CLIENTS }, () => new Promise((resolve, reject) => {
      const started = process.hrtime.bigint();
      const c = io(url, { transports, forceNew: true, reconnection: false });
      const late = setTimeout(() => reject(new Error("no connect within 10 s")), 10000);
      c.once("connect_error", reject);
      c.once("connect", () => clearTimeout(late));
      c.once("connect", () => {
        connectMs.push(Number(process.hrtime.bigint() - started) / 1e6);
        if (!UPGRADE || c.io.engine.transport.name === "websocket") return resolve(c);
        const timer = setTimeout(() => reject(new Error("no upgrade within 10 s")), 10000);
        c.io.engine.once("upgrade", () => {
          clearTimeout(timer);
          resolve(c);
        });
      });
    })),
  );
  const latencies = [];
  let acks = 0;
  let measuring = false;
  let running = true;
  const loop = async (c) => {
    while (running) {
      const t0 = process.hrtime.bigint();
      await c.timeout(10000).emitWithAck("echo", "x");
      if (measuring) {
        acks++;
        latencies.push(Number(process.hrtime.bigint() - t0) / 1000);
      }
    }
  };
  const loops = clients.map(loop);
  await new Promise((r) => setTimeout(r, WARMUP * 1000));
  measuring = true;
  const r0 = requests;
  const t0 = Date.now();
  await new Promise((r) => setTimeout(r, SECS * 1000));
  measuring = false;
  const secs = (Date.now() - t0) / 1000;
  const r1 = requests;
  running = false;
  await Promise.allSettled(loops);
  latencies.sort((a, b) => a - b);
  connectMs.sort((a, b) => a - b);
  const quantile = (xs, p) => Math.round(xs[Math.min(xs.length - 1, Math.floor(p * xs.length))] || 0);
  const q = (p) => quantile(latencies, p);
  console.log(JSON.stringify({
    clients: CLIENTS,
    acks_per_s: Math.round(acks / secs),
    http_requests_per_s: Math.round((r1 - r0) / secs),
    p50_us: q(0.5),
    p99_us: q(0.99),
    connect_ms_p50: quantile(connectMs, 0.5),
    connect_ms_p99: quantile(connectMs, 0.99),
  }));
  for (const c of clients) c.disconnect();
  proxy.close();
  process.exit(0);
});
