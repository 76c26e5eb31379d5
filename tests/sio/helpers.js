// Waiting helpers shared by the official-client suites: every wait is bounded.
"use strict";

/// Resolves with the arguments of the next `event` on `emitter`, or rejects after `ms`.
function once(emitter, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms);
    emitter.once(event, (...args) => {
      clearTimeout(timer);
      resolve(args);
    });
  });
}

/// Emits `args` with an ack callback; resolves with the reply, rejects after 5 s.
function ack(socket, ...args) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ack for ${args[0]}`)), 5000);
    socket.emit(...args, (...reply) => {
      clearTimeout(timer);
      resolve(reply);
    });
  });
}

/// Resolves with what `socket` gets as `event` within `ms`, or null.
function maybe(socket, event, ms = 300) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(null), ms);
    socket.once(event, (...args) => {
      clearTimeout(timer);
      resolve(args);
    });
  });
}

/// Resolves with "connect" or the connect_error, whichever comes first.
function outcome(socket, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no connect or connect_error")), ms);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve("connect");
    });
    socket.once("connect_error", (err) => {
      clearTimeout(timer);
      resolve(err);
    });
  });
}

/// Sockets opened by `connectTo`, for `closeAll` after each test.
const opened = [];

/// An official client for `url` (server URL + namespace): its own Manager, no
/// reconnection, a 5 s connect timeout, then `opts`; closed by `closeAll`.
function openClient(url, opts = {}) {
  const { io } = require("socket.io-client");
  const socket = io(url, { forceNew: true, reconnection: false, timeout: 5000, ...opts });
  opened.push(socket);
  return socket;
}

/// `openClient` over `transport`, once connected; rejects if it does not connect in 5 s.
async function connectTo(url, transport = "websocket") {
  const socket = openClient(url, { transports: [transport] });
  await once(socket, "connect");
  return socket;
}

function closeAll() {
  while (opened.length) opened.pop().disconnect();
}

/// The servers a Redis suite runs against, from the environment that
/// tests/redis_bridge.rs sets: `SERVERS="A=http://…,B=…"` must name every one of
/// `names`; `REDIS_URL` is returned as is (undefined if unset).
function clusterFromEnv(names) {
  const servers = Object.fromEntries(
    (process.env.SERVERS || "").split(",").filter(Boolean).map((kv) => kv.split("=")),
  );
  if (!names.every((n) => servers[n])) {
    throw new Error(`SERVERS must name ${names.join(", ")}`);
  }
  return { SERVERS: servers, REDIS_URL: process.env.REDIS_URL };
}

module.exports = { once, ack, maybe, outcome, openClient, connectTo, closeAll, clusterFromEnv };
