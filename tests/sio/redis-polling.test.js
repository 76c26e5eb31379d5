// Long-polling without sticky sessions (tests/redis_bridge.rs starts two Throng nodes A
// and B on one Redis): a round-robin proxy made here sends each HTTP request to the
// next node and drops cookies, as an AWS ALB does for a client that keeps none. Every
// request that lands on the node not owning its session is forwarded over Redis.
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

/// The proxy: its pool (a health check would take a dead node out), and what it sent where.
const proxy = { pool: [upstream(SERVERS.A), upstream(SERVERS.B)], next: 0, sent: [0, 0] };
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
  proxyServer.on("upgrade", (req, socket, head) => {
    const target = pick();
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

test("a client whose upgrade lands on the other node keeps working", async () => {
  for (let i = 0; i < 4; i++) {
    const client = viaProxy({ transports: ["polling", "websocket"] });
    await once(client, "connect");
    const lost = [];
    client.on("disconnect", (why) => lost.push(why));
    await sleep(700);
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
