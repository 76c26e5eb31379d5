// Benchmark peer for Throng: node's `ws` echo server on 127.0.0.1. Usage: node echo.js --port P
'use strict';
const { WebSocketServer } = require('ws');
const i = process.argv.indexOf('--port');
const port = i > 0 ? Number(process.argv[i + 1]) : 9003;
const wss = new WebSocketServer({ host: '127.0.0.1', port, maxPayload: 16 * 1024 * 1024, perMessageDeflate: false });
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => {});
});
wss.on('listening', () => console.error(`node ws echo listening on 127.0.0.1:${port}`));
