// An outside client, written as a third party would, using only Node and the
// npm `ws` package: it authenticates on agentd's unix socket with the nonce
// handshake (DESIGN.md §3) and completes one WebSocket turn.
//
// usage: node ws-unix-client.mjs SOCKET IDENTITY_JSON SESSION TEXT
// prints the streamed reply on stdout; exits 0 at turn_complete.
import net from 'node:net';
import fs from 'node:fs';
import crypto from 'node:crypto';
import WebSocket from 'ws';

const [socketPath, identityPath, session, text] = process.argv.slice(2);
if (!text) {
  console.error('usage: node ws-unix-client.mjs SOCKET IDENTITY_JSON SESSION TEXT');
  process.exit(2);
}
const ident = JSON.parse(fs.readFileSync(identityPath, 'utf8'));
const seed = Buffer.from(ident.seed, 'hex');
const cert = Buffer.from(ident.cert, 'hex');
// An Ed25519 private key from its 32-byte seed, as PKCS#8 DER.
const key = crypto.createPrivateKey({
  key: Buffer.concat([Buffer.from('302e020100300506032b657004220420', 'hex'), seed]),
  format: 'der', type: 'pkcs8',
});

function handshake(sock) {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const onData = (d) => {
      buf = Buffer.concat([buf, d]);
      if (buf.length < 32) return;
      sock.off('data', onData);
      if (buf.length > 32) return reject(new Error('server sent more than the nonce'));
      const nonce = buf.subarray(0, 32);
      const len = Buffer.alloc(4);
      len.writeUInt32BE(cert.length);
      const digest = crypto.createHash('sha256').update(cert).digest();
      const msg = Buffer.concat([Buffer.from('openagent-auth-v1'), nonce, digest]);
      const sig = crypto.sign(null, msg, key);
      sock.write(Buffer.concat([len, cert, sig]));
      resolve();
    };
    sock.on('data', onData);
    sock.once('error', reject);
  });
}

const sock = net.connect({ path: socketPath });
await new Promise((res, rej) => { sock.once('connect', res); sock.once('error', rej); });
await handshake(sock);

const ws = new WebSocket('ws://agentd/ws', { createConnection: () => sock });
const timer = setTimeout(() => { console.error('timeout'); process.exit(1); }, 20000);
ws.on('message', (data) => {
  const m = JSON.parse(data.toString());
  switch (m.type) {
    case 'auth_ok':
      ws.send(JSON.stringify({ type: 'session_open', session_id: session }));
      ws.send(JSON.stringify({ type: 'text_final', session_id: session, text }));
      break;
    case 'delta':
      process.stdout.write(m.text);
      break;
    case 'error':
      console.error('error:', m.text);
      process.exit(1);
      break;
    case 'turn_complete':
      clearTimeout(timer);
      process.stdout.write('\n');
      ws.close();
      process.exit(0);
  }
});
ws.on('unexpected-response', (_req, res) => { console.error('HTTP', res.statusCode); process.exit(1); });
ws.on('error', (e) => { console.error('ws error:', e.message); process.exit(1); });
