// Benchmark peer for Throng: a Node socket.io 4.8 server made to the same contract as
// `throng serve --app sio-shootout` (src/app/sio_shootout.rs), for `throng bench --proto
// socketio` and scripts/bench-sio.sh.
// Usage: node server.js PORT        (listens on 127.0.0.1:PORT, path /socket.io/)
//        SIO_POLLING=1 node server.js PORT   (HTTP long-polling allowed too)
//        REDIS_URL=redis://127.0.0.1:P node server.js PORT   (one host of a Redis bus)
//
// Namespace "/" only; Node's defaults (pingInterval 25 s, pingTimeout 20 s,
// maxHttpBufferSize 1e6) except: WebSocket transport only, no compression
// (perMessageDeflate and httpCompression off), connectTimeout 45 s, no cookie.
// With SIO_POLLING=1 the transports are Node's default ["polling", "websocket"]
// instead: scripts/bench-sio.sh sets it for its connect-polling scenario only (idle
// long-polling sessions); every other scenario runs WebSocket only.
//   echo(...P)      -> ack(...P) when the client asked for an ack, else emit("echo", ...P)
//   broadcast(...P) -> io.emit("broadcast", ...P) to every socket (the sender too, encoded
//                      once by the adapter), then emit("broadcastResult", ...P) to the sender
// With REDIS_URL the server joins that bus through @socket.io/redis-adapter 8.x (classic
// format, the `redis` 4.x client, key "socket.io", the adapter's defaults) before it
// listens: io.emit then reaches every socket of every server on the bus, as with
// `throng serve --redis-url` (scripts/bench-bridge.sh runs two of these cross-host).
"use strict";

const http = require("http");
const { Server } = require("socket.io");

const port = Number(process.argv[2] || 3000);
const polling = process.env.SIO_POLLING === "1";
const httpServer = http.createServer();
const io = new Server(httpServer, {
  path: "/socket.io/",
  transports: polling ? ["polling", "websocket"] : ["websocket"],
  perMessageDeflate: false,
  httpCompression: false,
  connectTimeout: 45000,
  cookie: false,
  serveClient: false,
});

function lastIsAck(args) {
  return typeof args[args.length - 1] === "function" ? args.pop() : null;
}

io.on("connection", (socket) => {
  socket.on("echo", (...args) => {
    const ack = lastIsAck(args);
    if (ack) ack(...args);
    else socket.emit("echo", ...args);
  });
  socket.on("broadcast", (...args) => {
    lastIsAck(args);
    io.emit("broadcast", ...args);
    socket.emit("broadcastResult", ...args);
  });
});

function listen(bus) {
  httpServer.listen(port, "127.0.0.1", () =>
    console.error(
      `node socket.io ${require("socket.io/package.json").version} sio-shootout on ` +
        `127.0.0.1:${port}, transports ${polling ? "polling, websocket" : "websocket"}` +
        (bus ? `, ${bus}` : "")
    )
  );
}

const redisUrl = process.env.REDIS_URL;
if (redisUrl) {
  const { createClient } = require("redis");
  const { createAdapter } = require("@socket.io/redis-adapter");
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  pub.on("error", (e) => console.error("redis pub:", e.message));
  sub.on("error", (e) => console.error("redis sub:", e.message));
  Promise.all([pub.connect(), sub.connect()]).then(
    () => {
      io.adapter(createAdapter(pub, sub));
      const version = require("@socket.io/redis-adapter/package.json").version;
      listen(`redis-adapter ${version} on ${redisUrl}`);
    },
    (e) => {
      console.error(`redis ${redisUrl}: ${e.message}`);
      process.exit(1);
    }
  );
} else {
  listen(null);
}
