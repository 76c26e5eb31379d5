// Interop with an independent client: node's `ws` package. Usage: node ws_interop.js URL
// Echoes text (ASCII and non-ASCII) and binary (0 B, 70 KB, 2 MB) messages and checks every
// reply; exits 0 on success, 1 with a message on the first mismatch, 2 on a timeout.
'use strict';
const WebSocket = require('ws');

const url = process.argv[2];
const cases = [
  ['text', 'hello'],
  ['text', 'κόσμε € 𝄞 ' + 'ü'.repeat(1000)],
  ['text', ''],
  ['binary', Buffer.alloc(0)],
  ['binary', Buffer.from([0, 1, 2, 255])],
  ['binary', Buffer.alloc(70 * 1024, 7)],
  ['binary', Buffer.from(Array.from({ length: 2 * 1024 * 1024 }, (_, i) => (i * 31) & 255))],
];

const timer = setTimeout(() => { console.error('timeout'); process.exit(2); }, 20000);
const ws = new WebSocket(url);
let i = 0;
ws.on('open', () => send());
function send() {
  const [kind, data] = cases[i];
  ws.send(data, { binary: kind === 'binary' });
}
ws.on('message', (data, isBinary) => {
  const [kind, want] = cases[i];
  const ok = kind === 'binary'
    ? isBinary && Buffer.compare(Buffer.from(data), want) === 0
    : !isBinary && data.toString('utf8') === want;
  if (!ok) {
    console.error(`case ${i} (${kind}, ${want.length}): reply differs`);
    process.exit(1);
  }
  i += 1;
  if (i < cases.length) { send(); } else { ws.close(1000, 'done'); }
});
ws.on('close', (code) => {
  clearTimeout(timer);
  if (i !== cases.length || code !== 1000) {
    console.error(`closed early: ${i}/${cases.length} cases, code ${code}`);
    process.exit(1);
  }
  console.log(`ws interop: ${cases.length} echoes ok, close ${code}`);
  process.exit(0);
});
ws.on('error', (e) => { console.error('error:', e.message); process.exit(1); });
