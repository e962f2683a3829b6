#!/usr/bin/env node
// Sidecar-pair floor: pure Node echo and bulk transfer between two iroh
// endpoints in two processes (like two sidecars, without the unix sockets and
// without Go), loopback, relays and discovery off. Go benchmarks in
// internal/iroh run it to print ratios against the full path.
//
//   node bench/floor.mjs [echo_iterations=2000] [bulk_bytes=8388608] [msg_size=100]
//
// Prints one JSON line: {"connect_ms","echo_p50_us","echo_p99_us","echo_iters","bulk_bytes","bulk_mb_s"}.
import { spawn } from 'node:child_process'
import readline from 'node:readline'
import { fileURLToPath } from 'node:url'
import irohPkg from '@number0/iroh/index.js'

const { Endpoint, EndpointAddr, EndpointId, RelayMode } = irohPkg
const ALPN_ECHO = Array.from(Buffer.from('agentd/bench-echo/1'))
const ALPN_SINK = Array.from(Buffer.from('agentd/bench-sink/1'))
const CHUNK = 64 * 1024

function toArray(buf) {
  const a = new Array(buf.length)
  for (let i = 0; i < buf.length; i++) a[i] = buf[i]
  return a
}

async function bind(alpns) {
  const b = Endpoint.builder()
  b.applyMinimal()
  b.relayMode(RelayMode.disabled())
  if (alpns) b.alpns(alpns)
  b.bindAddr('127.0.0.1:0')
  return await b.bind()
}

async function server() {
  const ep = await bind([ALPN_ECHO, ALPN_SINK])
  process.stdout.write(JSON.stringify({ id: Buffer.from(ep.id().toBytes()).toString('hex'), addrs: ep.addr().directAddresses() }) + '\n')
  process.stdin.on('end', () => process.exit(0))
  process.stdin.resume()
  for (;;) {
    const inc = await ep.acceptNext()
    if (!inc) return
    ;(async () => {
      const conn = await (await inc.accept()).connect()
      const sink = Buffer.from(conn.alpn()).equals(Buffer.from(ALPN_SINK))
      for (;;) {
        const bi = await conn.acceptBi()
        ;(async () => {
          let total = 0
          for (;;) {
            const d = await bi.recv.read(CHUNK)
            if (d.length === 0) break
            total += d.length
            if (!sink) await bi.send.writeAll(d)
          }
          if (sink) await bi.send.writeAll(toArray(Buffer.from(String(total))))
          await bi.send.finish()
        })().catch(() => {})
      }
    })().catch(() => {})
  }
}

async function client() {
  const iters = Number(process.argv[2] || 2000)
  const bulk = Number(process.argv[3] || 8 << 20)
  const msgSize = Number(process.argv[4] || 100)
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), 'server'], { stdio: ['pipe', 'pipe', 'inherit'] })
  const srv = await new Promise((resolve) => readline.createInterface({ input: child.stdout }).once('line', (l) => resolve(JSON.parse(l))))
  const ep = await bind()
  const id = EndpointId.fromBytes(toArray(Buffer.from(srv.id, 'hex')))
  const addr = new EndpointAddr(id, null, srv.addrs)

  let t = performance.now()
  const conn = await ep.connect(addr, ALPN_ECHO)
  const connectMs = performance.now() - t

  const bi = await conn.openBi()
  const msg = toArray(Buffer.alloc(msgSize, 7))
  const lat = []
  for (let i = 0; i < iters + 50; i++) {
    t = performance.now()
    await bi.send.writeAll(msg)
    let got = 0
    while (got < msgSize) got += (await bi.recv.read(CHUNK)).length
    if (i >= 50) lat.push((performance.now() - t) * 1000)
  }
  await bi.send.finish()
  lat.sort((a, b) => a - b)

  const sconn = await ep.connect(addr, ALPN_SINK)
  const sbi = await sconn.openBi()
  const chunk = Buffer.alloc(CHUNK, 1)
  t = performance.now()
  for (let sent = 0; sent < bulk; sent += CHUNK) await sbi.send.writeAll(toArray(chunk))
  await sbi.send.finish()
  const reply = Buffer.from(await sbi.recv.readToEnd(64)).toString()
  const bulkS = (performance.now() - t) / 1000
  if (Number(reply) < bulk) throw new Error(`sink got ${reply} bytes, sent ${bulk}`)

  process.stdout.write(
    JSON.stringify({
      connect_ms: +connectMs.toFixed(2),
      echo_p50_us: Math.round(lat[Math.floor(lat.length / 2)]),
      echo_p99_us: Math.round(lat[Math.floor(lat.length * 0.99)]),
      echo_iters: iters,
      bulk_bytes: Number(reply),
      bulk_mb_s: +(Number(reply) / bulkS / 1e6).toFixed(2),
    }) + '\n',
  )
  child.stdin.end()
  await ep.close()
  process.exit(0)
}

if (process.argv[2] === 'server') await server()
else await client()
