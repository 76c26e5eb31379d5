// Long-polling without sticky sessions (tests/redis_bridge.rs starts two Throng nodes A
// and B on one Redis): a round-robin proxy made here sends each HTTP request to the
// next node and drops cookies, as an AWS ALB does for a client that keeps none. Every
// request that lands on the node not owning its session is forwarded over Redis. A
// WebSocket upgrade that lands there is handed over (the session had joined no
// namespace yet) or relayed (it had).
// Env: SERVERS="A=http://…,B=http://…", A_PID (the last test kills A).
"use strict";

const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const http = require("node:http");
const net = require("node:net");
const { once, ack, openClient, closeAll, clusterFromEnv } = require("./helpers");

const { SERVERS } = clusterFromEnv(["A", "B"]);
const A_PID = Number(process.env.A_PID);
if (!A_PID) throw new Error("A_PID must be set");

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const upstream = (url) => ({ host: new URL(url).hostname, port: Number(new URL(url).port) });

/// The proxy: its pool (a health check would take a dead node out), what it sent where,
/// and, with `upgradesElsewhere`, WebSocket upgrades sent to the node that does not own
/// their session (known by the process tag in the sid, `tags`), `upgradeDelay` ms late.
const proxy = {
  pool: [upstream(SERVERS.A), upstream(SERVERS.B)],
  next: 0,
  sent: [0, 0],
  upgradesElsewhere: false,
  upgradeDelay: 0,
  tags: {},
};
let proxyServer;
let PROXY;

function pick() {
  const i = proxy.next++ % proxy.pool.length;
  const target = proxy.pool[i];
  proxy.sent[target.port === upstream(SERVERS.A).port ? 0 : 1]++;
  return target;
}

before(async () => {
  proxyServer = http.createServer((req, res) => {
    const target = pick();
    const headers = { ...req.headers };
    delete headers.cookie;
    const out = http.request(
      { ...target, method: req.method, path: req.url, headers, agent: false },
      (answer) => {
        const back = { ...answer.headers };
        delete back["set-cookie"];
        res.writeHead(answer.statusCode, back);
        answer.pipe(res);
      },
    );
    out.on("error", () => {
      res.writeHead(502);
      res.end();
    });
    req.pipe(out);
  });
  // WebSocket upgrades go round-robin too, as raw bytes.
  proxyServer.on("upgrade", async (req, socket, head) => {
    const sid = new URL(req.url, "http://x").searchParams.get("sid") ?? "";
    const owner = proxy.tags[sid.slice(1, 7)];
    const target = proxy.upgradesElsewhere && owner
      ? upstream(owner === "A" ? SERVERS.B : SERVERS.A)
      : pick();
    socket.pause();
    await sleep(proxy.upgradeDelay);
    socket.resume();
    const up = net.connect(target, () => {
      const lines = [`${req.method} ${req.url} HTTP/1.1`];
      for (let i = 0; i < req.rawHeaders.length; i += 2) {
        if (req.rawHeaders[i].toLowerCase() !== "cookie") {
          lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
        }
      }
      up.write(lines.join("\r\n") + "\r\n\r\n");
      up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on("error", () => socket.destroy());
    socket.on("error", () => up.destroy());
  });
  // Each node's process tag: characters 1-6 of any sid it makes.
  for (const name of ["A", "B"]) {
    const res = await fetch(`${SERVERS[name]}/socket.io/?EIO=4&transport=polling`);
    proxy.tags[JSON.parse((await res.text()).slice(1)).sid.slice(1, 7)] = name;
  }
  await new Promise((r) => proxyServer.listen(0, "127.0.0.1", r));
  PROXY = `http://127.0.0.1:${proxyServer.address().port}`;
});

after(() => proxyServer.close());
test.afterEach(closeAll);

function viaProxy(opts = {}) {
  return openClient(PROXY + "/", { transports: ["polling"], ...opts });
}

test("a polling client with no cookies works across both nodes, over several pings", async () => {
  const before = [...proxy.sent];
  const client = viaProxy();
  await once(client, "connect");
  const lost = [];
  client.on("disconnect", (why) => lost.push(why));
  for (let i = 0; i < 10; i++) {
    assert.deepEqual(await ack(client, "echo", i, { i }), [i, { i }]);
  }
  const got = once(client, "news");
  assert.deepEqual(await ack(client, "to-all", "news", "hello"), []);
  assert.deepEqual(await got, ["hello"]);
  // pingInterval is 1 s on the conformance app: several pings, each on either node.
  await sleep(3500);
  assert.deepEqual(await ack(client, "echo", "still"), ["still"]);
  assert.deepEqual(lost, [], "the session was lost");
  assert.ok(proxy.sent[0] > before[0] + 3 && proxy.sent[1] > before[1] + 3, JSON.stringify(proxy.sent));
  // A member of a room on the other node's session still gets room broadcasts.
  const other = viaProxy();
  await once(other, "connect");
  await ack(other, "join", "polled");
  const heard = once(other, "room-news");
  await ack(client, "to-room", "polled", "room-news", 1);
  assert.deepEqual(await heard, [1]);
});

/// `name`'s counter `metric` with `labels`, from its /metrics.
async function counter(name, metric, labels = "") {
  const text = await (await fetch(`${SERVERS[name]}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${metric}${labels} `));
  return Number(line?.split(" ")[1] ?? NaN);
}

/// `metric` with `{direction="…"}` summed over both nodes.
async function both(metric, direction) {
  const label = `{direction="${direction}"}`;
  return (await counter("A", metric, label)) + (await counter("B", metric, label));
}
const relayed = (direction) => both("throng_redis_websocket_relayed_total", direction);
const handedOver = (direction) => both("throng_redis_websocket_handovers_total", direction);

async function relaysOpen() {
  const metric = "throng_redis_websocket_relays_open";
  let sum = 0;
  for (const name of ["A", "B"]) {
    for (const d of ["out", "in"]) sum += await counter(name, metric, `{direction="${d}"}`);
  }
  return sum;
}

/// Checks that `client`, on WebSocket, echoes binary, gets room broadcasts both ways
/// with `listener` (in `room`) and lives over a ping interval.
async function worksOnWebSocket(client, listener, room, i) {
  if (client.io.engine.transport.name !== "websocket") {
    await once(client.io.engine, "upgrade", 5000);
  }
  assert.equal(client.io.engine.transport.name, "websocket");
  const lost = [];
  client.on("disconnect", (why) => lost.push(why));
  assert.deepEqual(await ack(client, "echo", i, Buffer.from([i, 1, 2])), [i, Buffer.from([i, 1, 2])]);
  const heard = once(listener, "from-ws");
  assert.deepEqual(await ack(client, "to-room", room, "from-ws", i), []);
  assert.deepEqual(await heard, [i]);
  await ack(client, "join", room);
  const back = once(client, "to-ws");
  await ack(listener, "to-room", room, "to-ws", i);
  assert.deepEqual(await back, [i]);
  await ack(client, "leave", room);
  // Over a ping interval (1 s on the conformance app).
  await sleep(1300);
  assert.deepEqual(await ack(client, "echo", "still"), ["still"]);
  assert.deepEqual(lost, []);
}

test("an upgrade that lands on the other node before the session joins a namespace is handed over: the WebSocket is local there", async () => {
  proxy.upgradesElsewhere = true;
  try {
    const before = { in: await handedOver("in"), out: await handedOver("out"), relayed: await relayed("out") };
    const listener = viaProxy();
    await once(listener, "connect");
    await ack(listener, "join", "handed-room");
    for (let i = 0; i < 3; i++) {
      const client = viaProxy({ transports: ["polling", "websocket"] });
      await once(client, "connect");
      await worksOnWebSocket(client, listener, "handed-room", i);
      assert.equal(await relaysOpen(), 0, "no tunnel: the WebSocket is where it landed");
    }
    assert.equal((await handedOver("in")) - before.in, 3, "every session was handed over");
    assert.equal((await handedOver("out")) - before.out, 3);
    assert.equal((await relayed("out")) - before.relayed, 0, "nothing was relayed");
  } finally {
    proxy.upgradesElsewhere = false;
  }
});

test("an upgrade that lands on the other node after the session joined a namespace is relayed to the owner", async () => {
  proxy.upgradesElsewhere = true;
  // Past the owner's hold on the first CONNECT (300 ms, released by a 250 ms sweep).
  proxy.upgradeDelay = 1000;
  try {
    const before = await relayed("out");
    const listener = viaProxy();
    await once(listener, "connect");
    await ack(listener, "join", "relayed-room");
    for (let i = 0; i < 3; i++) {
      const client = viaProxy({ transports: ["polling", "websocket"] });
      await once(client, "connect");
      // Pings cross the tunnel here.
      await worksOnWebSocket(client, listener, "relayed-room", i);
    }
    assert.equal((await relayed("out")) - before, 3, "every upgrade was relayed");
    const open = relaysOpen;
    assert.equal(await open(), 6, "3 tunnels, each open on both ends");
    // Clients leaving end their tunnels on both nodes.
    closeAll();
    const deadline = Date.now() + 5000;
    while ((await open()) > 0 && Date.now() < deadline) await sleep(50);
    assert.equal(await open(), 0, "tunnels left open");
  } finally {
    proxy.upgradesElsewhere = false;
    proxy.upgradeDelay = 0;
  }
});

test("a client whose upgrade goes round-robin keeps working", async () => {
  for (let i = 0; i < 4; i++) {
    const client = viaProxy({ transports: ["polling", "websocket"] });
    await once(client, "connect");
    const lost = [];
    client.on("disconnect", (why) => lost.push(why));
    await sleep(700);
    assert.equal(client.io.engine.transport.name, "websocket");
    assert.deepEqual(await ack(client, "echo", i), [i]);
    assert.deepEqual(lost, []);
  }
});

test("the owner killed: its sids get 400 code 1 at once, and clients reconnect elsewhere", async () => {
  // A session made on A: the handshake goes there, the requests after it to both.
  proxy.pool = [upstream(SERVERS.A)];
  const client = viaProxy({ reconnection: true, reconnectionDelay: 100, reconnectionDelayMax: 200 });
  await once(client, "connect");
  proxy.pool = [upstream(SERVERS.A), upstream(SERVERS.B)];
  const firstId = client.id;
  const handshake = await fetch(`${SERVERS.A}/socket.io/?EIO=4&transport=polling`);
  const sidOnA = JSON.parse((await handshake.text()).slice(1)).sid;
  const reconnected = once(client, "connect", 10000);
  process.kill(A_PID, "SIGKILL");
  proxy.pool = [upstream(SERVERS.B)]; // The load balancer's health check.
  const started = Date.now();
  const answer = await fetch(`${SERVERS.B}/socket.io/?EIO=4&transport=polling&sid=${sidOnA}`);
  assert.equal(answer.status, 400);
  assert.deepEqual(await answer.json(), { code: 1, message: "Session ID unknown" });
  // The owner has 1 s to take it (checked each 250 ms sweep); the rest is a loaded
  // test machine.
  assert.ok(Date.now() - started < 5000, `took ${Date.now() - started} ms`);
  // The client connected through A's session: it loses it and connects again on B.
  await reconnected;
  assert.notEqual(client.id, firstId);
  assert.deepEqual(await ack(client, "echo", "again"), ["again"]);
});
