// Benchmark peer for Throng: node's `ws` on 127.0.0.1 speaking the websocket-shootout
// protocol, plus Throng's pubsub protocol on the same port (for `throng bench fanout`).
// Usage: node shootout.js --port P
//
// shootout: {"type":"echo","payload":X} -> the same text back to the sender;
//           {"type":"broadcast","payload":X} -> {"type":"broadcast","payload":X} to every
//           client (sender included), then {"type":"broadcastResult","payload":X} to the sender.
// pubsub:   {"op":"subscribe","topic":T} -> {"op":"subscribed","topic":T};
//           {"op":"unsubscribe","topic":T} -> {"op":"unsubscribed","topic":T};
//           {"op":"publish","topic":T,"data":X,"id":N} -> {"topic":T,"data":X} to every
//           subscriber of T, then {"op":"published","id":N} to the publisher (no id, no ack).
// Errors: {"op":"error","reason":"..."}. Each broadcast or delivery is serialized once.
'use strict';
const { WebSocketServer } = require('ws');
const i = process.argv.indexOf('--port');
const port = i > 0 ? Number(process.argv[i + 1]) : 9004;
const wss = new WebSocketServer({ host: '127.0.0.1', port, maxPayload: 16 * 1024 * 1024, perMessageDeflate: false });
const topics = new Map(); // topic -> Set of sockets

function error(ws, reason) {
  ws.send(JSON.stringify({ op: 'error', reason }));
}

function unsubscribeAll(ws) {
  for (const t of ws.topics) {
    const subs = topics.get(t);
    if (subs) {
      subs.delete(ws);
      if (subs.size === 0) topics.delete(t);
    }
  }
  ws.topics.clear();
}

wss.on('connection', (ws) => {
  ws.topics = new Set();
  ws.on('message', (data, isBinary) => {
    if (isBinary) return error(ws, 'binary messages are not supported');
    const text = data.toString();
    let msg;
    try {
      msg = JSON.parse(text);
    } catch (e) {
      return error(ws, 'invalid JSON');
    }
    if (msg === null || typeof msg !== 'object') return error(ws, 'not an object');
    if (msg.type === 'echo') return ws.send(text);
    if (msg.type === 'broadcast') {
      const out = JSON.stringify({ type: 'broadcast', payload: msg.payload });
      for (const c of wss.clients) if (c.readyState === 1) c.send(out);
      return ws.send(JSON.stringify({ type: 'broadcastResult', payload: msg.payload }));
    }
    const t = msg.topic;
    if ((msg.op === 'subscribe' || msg.op === 'unsubscribe' || msg.op === 'publish') && typeof t !== 'string') {
      return error(ws, 'topic must be a string');
    }
    switch (msg.op) {
      case 'subscribe': {
        let subs = topics.get(t);
        if (!subs) topics.set(t, (subs = new Set()));
        subs.add(ws);
        ws.topics.add(t);
        return ws.send(JSON.stringify({ op: 'subscribed', topic: t }));
      }
      case 'unsubscribe': {
        const subs = topics.get(t);
        if (subs) {
          subs.delete(ws);
          if (subs.size === 0) topics.delete(t);
        }
        ws.topics.delete(t);
        return ws.send(JSON.stringify({ op: 'unsubscribed', topic: t }));
      }
      case 'publish': {
        const subs = topics.get(t);
        if (subs) {
          const out = JSON.stringify({ topic: t, data: msg.data });
          for (const c of subs) if (c.readyState === 1) c.send(out);
        }
        if (msg.id !== undefined) ws.send(JSON.stringify({ op: 'published', id: msg.id }));
        return;
      }
      default:
        return error(ws, 'unknown message');
    }
  });
  ws.on('close', () => unsubscribeAll(ws));
  ws.on('error', () => {});
});
wss.on('listening', () => console.error(`node ws shootout+pubsub listening on 127.0.0.1:${port}`));
