// A Node socket.io 4.8 server made to the same contract as `throng serve --app
// conformance` (see src/app/conformance.rs), so that the suite in this directory can be
// checked against the reference implementation:
//   node tests/sio/node-server.js PORT &
//   THRONG_URL=http://127.0.0.1:PORT node --test tests/sio/websocket.test.js
// (and likewise polling.test.js, engineio-raw.test.js).
// With a third argument, a Redis URL, it joins that bus through @socket.io/redis-adapter
// 8.x (the classic format), as a Node node of a mixed cluster (tests/redis_bridge.rs).
"use strict";

const { Server } = require("socket.io");

const port = Number(process.argv[2] || 3000);
const io = new Server({
  path: "/socket.io/",
  // Both transports, as in the contract: HTTP long-polling, WebSocket, and the upgrade.
  transports: ["polling", "websocket"],
  pingInterval: 1000,
  pingTimeout: 800,
  maxHttpBufferSize: 1e6,
  connectTimeout: 2000,
  cookie: false,
  perMessageDeflate: false,
  httpCompression: false,
});

function rooms(socket) {
  return [...socket.rooms].filter((r) => r !== socket.id).sort();
}

function lastIsAck(args) {
  return typeof args[args.length - 1] === "function" ? args.pop() : null;
}

function setup(nsp) {
  // From other servers or emitters on the Redis bus (serverSideEmit).
  nsp.on("relay", (event, ...payload) => nsp.local.emit(event, ...payload));
  nsp.on("local-sockets", (ack) =>
    nsp.local.fetchSockets().then((found) => ack(found.map((s) => s.id).sort())),
  );
  // Answers a cluster-wide question with `shape(result)`, or `{error}`.
  const answer = (ack, promise, shape) =>
    promise.then(
      (v) => ack(shape(v)),
      (e) => ack({ error: e.message }),
    );
  nsp.on("connection", (socket) => {
    socket.on("echo", (...args) => {
      const ack = lastIsAck(args);
      if (ack) ack(...args);
      else socket.emit("echo", ...args);
    });
    socket.on("whoami", (ack) =>
      ack({ sid: socket.id, nsp: nsp.name, auth: socket.handshake.auth || {}, rooms: rooms(socket) })
    );
    socket.on("join", (room, ack) => {
      socket.join(room);
      if (ack) ack(rooms(socket));
    });
    socket.on("leave", (room, ack) => {
      socket.leave(room);
      if (ack) ack(rooms(socket));
    });
    socket.on("to-room", (room, event, ...rest) => {
      const ack = lastIsAck(rest);
      nsp.to(room).emit(event, ...rest);
      if (ack) ack();
    });
    socket.on("broadcast", (event, ...rest) => {
      const ack = lastIsAck(rest);
      socket.broadcast.emit(event, ...rest);
      if (ack) ack();
    });
    socket.on("to-all", (event, ...rest) => {
      const ack = lastIsAck(rest);
      nsp.emit(event, ...rest);
      if (ack) ack();
    });
    socket.on("ask", (event, ...rest) => {
      const ack = lastIsAck(rest);
      if (!ack) return;
      socket.timeout(2000).emit(event, ...rest, (err, ...reply) => {
        if (err) ack({ timeout: true });
        else ack(...reply);
      });
    });
    socket.on("disconnect-me", () => socket.disconnect());
    socket.on("close-me", () => socket.disconnect(true));
    socket.on("drop-transport", () => socket.conn.close());
    socket.on("fetch-sockets", (wanted, ack) =>
      answer(ack, nsp.in(wanted).fetchSockets(), (found) => ({
        sockets: found
          .map((s) => ({ id: s.id, rooms: [...s.rooms].filter((r) => r !== s.id).sort() }))
          .sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0)),
      })),
    );
    socket.on("all-rooms", (ack) => {
      // The in-memory adapter (no Redis) has no allRooms: its own rooms are all.
      const all = nsp.adapter.allRooms
        ? nsp.adapter.allRooms()
        : Promise.resolve(new Set(nsp.adapter.rooms.keys()));
      answer(ack, all, (rooms) => ({ rooms: [...rooms].sort() }));
    });
    socket.on("server-count", (ack) =>
      answer(ack, Promise.resolve(nsp.adapter.serverCount()), (count) => ({ count })),
    );
    socket.on("ask-room", (room, event, ...rest) => {
      const ack = lastIsAck(rest);
      if (!ack) return;
      const asked = nsp.to(room).timeout(2000).emitWithAck(event, ...rest);
      answer(ack, asked, (replies) => ({ replies }));
    });
    socket.on("ask-servers", (event, ...rest) => {
      const ack = lastIsAck(rest);
      if (!ack) return;
      answer(ack, nsp.serverSideEmitWithAck(event, ...rest), (replies) => ({ replies }));
    });
  });
}

setup(io.of("/"));
setup(io.of("/custom"));
const guarded = io.of("/guarded");
guarded.use((socket, next) => {
  if (socket.handshake.auth && socket.handshake.auth.token === "s3cret") return next();
  const err = new Error("unauthorized");
  err.data = { code: "E_UNAUTHORIZED" };
  next(err);
});
setup(guarded);

// Listens once the adapter is in place (if any), so no client meets the in-memory one.
// argv: port, then optionally a Redis URL and `sharded` (createShardedAdapter).
const redisUrl = process.argv[3];
if (redisUrl) {
  const { createClient } = require("redis");
  const { createAdapter, createShardedAdapter } = require("@socket.io/redis-adapter");
  const adapter = process.argv[4] === "sharded" ? createShardedAdapter : createAdapter;
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  pub.on("error", (e) => console.error("redis pub:", e.message));
  sub.on("error", (e) => console.error("redis sub:", e.message));
  Promise.all([pub.connect(), sub.connect()]).then(() => {
    io.adapter(adapter(pub, sub));
    io.listen(port);
  });
} else {
  io.listen(port);
}
