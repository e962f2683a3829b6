// An independent check of vector.json, sharing no code with the Go
// package: a minimal RFC 8949 core-deterministic CBOR encoder and Node's
// own Ed25519. Run: node check_vector.mjs [vector.json]. Exit 0 = all match.
import { readFileSync } from "node:fs";
import { createHash, createPrivateKey, createPublicKey, sign, verify } from "node:crypto";

const v = JSON.parse(readFileSync(process.argv[2] ?? new URL("vector.json", import.meta.url), "utf8"));
const hex = (b) => Buffer.from(b).toString("hex");
const unhex = (s) => Buffer.from(s, "hex");

function head(major, n) {
  const m = major << 5;
  if (n < 24) return Buffer.from([m | n]);
  if (n < 0x100) return Buffer.from([m | 24, n]);
  if (n < 0x10000) { const b = Buffer.alloc(3); b[0] = m | 25; b.writeUInt16BE(n, 1); return b; }
  if (n < 0x100000000) { const b = Buffer.alloc(5); b[0] = m | 26; b.writeUInt32BE(n, 1); return b; }
  const b = Buffer.alloc(9); b[0] = m | 27; b.writeBigUInt64BE(BigInt(n), 1); return b;
}
function enc(x) {
  if (typeof x === "number") return head(0, x);
  if (typeof x === "string") { const s = Buffer.from(x, "utf8"); return Buffer.concat([head(3, s.length), s]); }
  if (Buffer.isBuffer(x)) return Buffer.concat([head(2, x.length), x]);
  if (Array.isArray(x)) return Buffer.concat([head(4, x.length), ...x.map(enc)]);
  // Map: keys sorted by their encoded bytes (§4.2.1).
  const items = Object.entries(x).map(([k, val]) => [enc(k), enc(val)]);
  items.sort((a, b) => Buffer.compare(a[0], b[0]));
  return Buffer.concat([head(5, items.length), ...items.flat()]);
}
// Ed25519 keys from raw 32-byte seeds / public keys via their DER forms.
const priv = (seed) => createPrivateKey({ key: Buffer.concat([unhex("302e020100300506032b657004220420"), seed]), format: "der", type: "pkcs8" });
const pub = (raw) => createPublicKey({ key: Buffer.concat([unhex("302a300506032b6570032100"), raw]), format: "der", type: "spki" });
const rawPub = (k) => createPublicKey(k).export({ format: "der", type: "spki" }).subarray(12);

const fail = [];
const check = (name, got, want) => { if (got !== want) fail.push(`${name}: got ${got}, want ${want}`); };

const coord = priv(unhex(v.coordinator_seed)), dev = priv(unhex(v.device_seed));
check("coordinator_pub", hex(rawPub(coord)), v.coordinator_pub);
check("device_pub", hex(rawPub(dev)), v.device_pub);

const payload = enc({ v: 1, handle: v.handle, device_pubkey: unhex(v.device_pub), network_id: v.network_id,
  issued_at: v.issued_at, expires_at: v.expires_at, capabilities: v.capabilities });
check("payload", hex(payload), v.payload);
const len = Buffer.alloc(4); len.writeUInt32BE(payload.length);
const cert = Buffer.concat([len, payload, sign(null, payload, coord)]);
check("cert", hex(cert), v.cert);
check("cert verifies", String(verify(null, payload, pub(unhex(v.coordinator_pub)), unhex(v.cert).subarray(4 + payload.length))), "true");

const msg = Buffer.concat([Buffer.from("openagent-auth-v1"), unhex(v.nonce), createHash("sha256").update(cert).digest()]);
check("challenge_message", hex(msg), v.challenge_message);
check("challenge_signature", hex(sign(null, msg, dev)), v.challenge_signature);

const tk = enc({ v: 1, code: v.ticket_code, node_id: v.coordinator_pub, name: v.ticket_name, network_id: v.network_id,
  role: v.ticket_role, expires: v.ticket_expires });
const alphabet = "abcdefghijklmnopqrstuvwxyz234567";
let bits = 0, acc = 0, b32 = "";
for (const byte of tk) { acc = (acc << 8) | byte; bits += 8; while (bits >= 5) { b32 += alphabet[(acc >>> (bits - 5)) & 31]; bits -= 5; } acc &= 0xff; }
if (bits > 0) b32 += alphabet[(acc << (5 - bits)) & 31];
check("ticket", "oa1" + b32, v.ticket);

if (fail.length) { console.error(fail.join("\n")); process.exit(1); }
console.log("vector.json: all values match");
