#!/usr/bin/env node
// A third-party agentd client over iroh, written only against the public
// protocol (no agentd code): it dials the agent's gateway with the npm
// @number0/iroh binding, sends the device-certificate preamble, upgrades the
// stream to a WebSocket by hand, runs one chat turn and prints the reply.
//
//   node iroh-client.mjs --identity FILE --node NODEID [--addr IP:PORT]...
//        [--relay URL] [--session ID] [--message TEXT] [--alpn ALPN]
//        [--seed HEX] [--timeout-ms N]
//
// FILE is an agentd identity file: {"version":1,"seed":"<hex>","cert":"<hex>"}.
// The seed is the device's Ed25519 key and so its iroh NodeId; --seed dials
// with another key (the gateway must then refuse the certificate).
//
// Exit status: 0 turn_complete received; 2 bad usage; 3 the gateway refused
// the stream (HTTP status printed); 4 no iroh connection / stream; 5 timeout;
// 1 anything else.
import crypto from 'node:crypto'
import fs from 'node:fs'
import irohPkg from '@number0/iroh/index.js'

const { Endpoint, EndpointAddr, EndpointId, RelayMode } = irohPkg

const ALPN_GATEWAY = 'openagent/gateway/1'
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11'

function die(code, msg) {
  process.stderr.write(`iroh-client: ${msg}\n`)
  process.exit(code)
}

function parseArgs(argv) {
  const o = { addrs: [], session: 'iroh-client', message: 'hello from a third-party iroh client', alpn: ALPN_GATEWAY, timeoutMs: 60000 }
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i]
    const v = argv[i + 1]
    if (v === undefined) die(2, `${k} needs a value`)
    i++
    switch (k) {
      case '--identity': o.identity = v; break
      case '--node': o.node = v; break
      case '--addr': o.addrs.push(v); break
      case '--relay': o.relay = v; break
      case '--session': o.session = v; break
      case '--message': o.message = v; break
      case '--alpn': o.alpn = v; break
      case '--seed': o.seed = v; break
      case '--timeout-ms': o.timeoutMs = Number(v); break
      default: die(2, `unknown argument ${k}`)
    }
  }
  o.identity = o.identity || process.env.AGENTD_IDENTITY
  o.node = o.node || process.env.AGENTD_NODE_ID
  if (!o.identity || !o.node) die(2, 'usage: --identity FILE --node NODEID [--addr IP:PORT]...')
  if (!/^[0-9a-f]{64}$/i.test(o.node)) die(2, '--node must be 64 hex characters')
  return o
}

// The binding takes plain Array<number>, not Buffers.
function toArray(buf) {
  const a = new Array(buf.length)
  for (let i = 0; i < buf.length; i++) a[i] = buf[i]
  return a
}

// ---------- WebSocket client framing (RFC 6455) ----------

function wsFrame(opcode, payload) {
  const mask = crypto.randomBytes(4)
  const n = payload.length
  let head
  if (n < 126) {
    head = Buffer.from([0x80 | opcode, 0x80 | n])
  } else if (n < 65536) {
    head = Buffer.alloc(4)
    head[0] = 0x80 | opcode
    head[1] = 0x80 | 126
    head.writeUInt16BE(n, 2)
  } else {
    head = Buffer.alloc(10)
    head[0] = 0x80 | opcode
    head[1] = 0x80 | 127
    head.writeBigUInt64BE(BigInt(n), 2)
  }
  const body = Buffer.alloc(n)
  for (let i = 0; i < n; i++) body[i] = payload[i] ^ mask[i & 3]
  return Buffer.concat([head, mask, body])
}

// parseFrames takes complete server frames off buf; returns [frames, rest].
function parseFrames(buf) {
  const frames = []
  for (;;) {
    if (buf.length < 2) break
    const fin = (buf[0] & 0x80) !== 0
    const opcode = buf[0] & 0x0f
    const masked = (buf[1] & 0x80) !== 0
    let len = buf[1] & 0x7f
    let off = 2
    if (len === 126) {
      if (buf.length < 4) break
      len = buf.readUInt16BE(2)
      off = 4
    } else if (len === 127) {
      if (buf.length < 10) break
      len = Number(buf.readBigUInt64BE(2))
      off = 10
    }
    if (masked) throw new Error('server frames must not be masked')
    if (buf.length < off + len) break
    frames.push({ fin, opcode, payload: buf.subarray(off, off + len) })
    buf = buf.subarray(off + len)
  }
  return [frames, buf]
}

async function main() {
  const o = parseArgs(process.argv.slice(2))
  const ident = JSON.parse(fs.readFileSync(o.identity, 'utf8'))
  if (!ident.seed || !ident.cert) die(2, `${o.identity}: want {"seed","cert"} (an enrolled agentd identity)`)
  const cert = Buffer.from(ident.cert, 'hex')
  const seed = Buffer.from(o.seed || ident.seed, 'hex')

  const timer = setTimeout(() => die(5, `no turn_complete within ${o.timeoutMs} ms`), o.timeoutMs)

  const b = Endpoint.builder()
  b.applyMinimal()
  if (o.relay) b.relayMode(RelayMode.customFromUrls([o.relay]))
  else b.relayMode(RelayMode.disabled())
  b.secretKey(toArray(seed))
  b.bindAddr('127.0.0.1:0')
  const ep = await b.bind()

  let conn, bi
  try {
    const id = EndpointId.fromBytes(toArray(Buffer.from(o.node, 'hex')))
    conn = await ep.connect(new EndpointAddr(id, o.relay || null, o.addrs), toArray(Buffer.from(o.alpn)))
    bi = await conn.openBi()
  } catch (e) {
    die(4, `connect to ${o.node.slice(0, 16)} (alpn ${o.alpn}): ${String((e && e.message) || e).split('\n')[0]}`)
  }
  const { send, recv } = bi
  const write = (buf) => send.writeAll(toArray(buf))

  // 1. The device-certificate preamble: u32be length, then the cert.
  const pre = Buffer.alloc(4)
  pre.writeUInt32BE(cert.length)
  // 2. An HTTP/1.1 WebSocket upgrade on /ws, written by hand.
  const key = crypto.randomBytes(16).toString('base64')
  const upgrade = [
    'GET /ws HTTP/1.1',
    'Host: agentd',
    'Upgrade: websocket',
    'Connection: Upgrade',
    `Sec-WebSocket-Key: ${key}`,
    'Sec-WebSocket-Version: 13',
    '', '',
  ].join('\r\n')
  await write(Buffer.concat([pre, cert, Buffer.from(upgrade)]))

  let buf = Buffer.alloc(0)
  const readMore = async () => {
    const d = await recv.read(64 * 1024)
    if (!d || d.length === 0) return false
    buf = Buffer.concat([buf, Buffer.from(d)])
    return true
  }

  // 3. The upgrade answer.
  let end
  while ((end = buf.indexOf('\r\n\r\n')) < 0) {
    if (!(await readMore())) die(3, `stream closed before an HTTP answer: ${buf.toString()}`)
  }
  const head = buf.subarray(0, end).toString()
  buf = buf.subarray(end + 4)
  const status = head.split('\r\n')[0]
  if (!/^HTTP\/1\.1 101 /.test(status)) {
    // Read the (small) error body for the message.
    for (let i = 0; i < 5 && buf.length < 4096; i++) if (!(await readMore())) break
    die(3, `gateway refused: ${status} ${buf.toString().trim()}`)
  }
  const accept = crypto.createHash('sha1').update(key + WS_GUID).digest('base64')
  const got = head.split('\r\n').find((l) => /^sec-websocket-accept:/i.test(l))
  if (!got || got.slice(got.indexOf(':') + 1).trim() !== accept) die(1, `bad Sec-WebSocket-Accept in:\n${head}`)

  // 4. The chat protocol.
  const sendJSON = (obj) => write(wsFrame(1, Buffer.from(JSON.stringify(obj))))
  let partial = []
  let authed = false
  let streamed = false
  for (;;) {
    let frames
    ;[frames, buf] = parseFrames(buf)
    for (const f of frames) {
      if (f.opcode === 9) { await write(wsFrame(10, f.payload)); continue }
      if (f.opcode === 8) die(1, `gateway closed the WebSocket: ${f.payload.subarray(2).toString()}`)
      if (f.opcode !== 1 && f.opcode !== 0) continue
      partial.push(f.payload)
      if (!f.fin) continue
      const msg = JSON.parse(Buffer.concat(partial).toString())
      partial = []
      switch (msg.type) {
        case 'auth_ok':
          authed = true
          process.stderr.write(`connected to ${msg.agent_name} (${msg.version})\n`)
          await sendJSON({ type: 'session_open', session_id: o.session })
          await sendJSON({ type: 'text_final', session_id: o.session, text: o.message })
          break
        case 'auth_error':
          die(3, `auth_error: ${msg.reason}`)
          break
        case 'delta':
          if (msg.session_id === o.session) { streamed = true; process.stdout.write(msg.text) }
          break
        case 'response':
          if (msg.session_id === o.session && !streamed) process.stdout.write(msg.text)
          break
        case 'error':
          process.stderr.write(`error: ${msg.text}\n`)
          break
        case 'turn_complete':
          if (msg.session_id !== o.session) break
          process.stdout.write('\n')
          clearTimeout(timer)
          await write(wsFrame(8, Buffer.from([0x03, 0xe8])))
          await send.finish().catch(() => {})
          await ep.close().catch(() => {})
          process.exit(0)
      }
    }
    if (!(await readMore())) die(1, `stream ended ${authed ? 'before turn_complete' : 'before auth_ok'}`)
  }
}

main().catch((e) => die(1, String((e && e.stack) || e)))
