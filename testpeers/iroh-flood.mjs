#!/usr/bin/env node
// A hostile iroh peer for agentd's flood tests, written only against the
// public protocol: from --nodes fresh NodeIds it opens --conns connections
// each, and on each holds --streams gateway streams that wrote one byte of
// a preamble and then nothing. A stream the agent ends is opened again at
// once, so the flood holds for as long as the script runs.
//
//   node iroh-flood.mjs --node NODEID [--addr IP:PORT]... [--nodes K]
//        [--conns C] [--streams S] [--alpn ALPN]
//
// stdout: "ready N" once N streams are open and have written their byte,
// then "reopened N" every second while streams are being reopened.
// It runs until stdin closes (then exits 0).
import crypto from 'node:crypto'
import irohPkg from '@number0/iroh/index.js'

const { Endpoint, EndpointAddr, EndpointId, RelayMode } = irohPkg

function die(code, msg) {
  process.stderr.write(`iroh-flood: ${msg}\n`)
  process.exit(code)
}

function parseArgs(argv) {
  const o = { addrs: [], nodes: 2, conns: 2, streams: 100, alpn: 'openagent/gateway/1' }
  for (let i = 0; i < argv.length; i += 2) {
    const k = argv[i]
    const v = argv[i + 1]
    if (v === undefined) die(2, `${k} needs a value`)
    switch (k) {
      case '--node': o.node = v; break
      case '--addr': o.addrs.push(v); break
      case '--nodes': o.nodes = Number(v); break
      case '--conns': o.conns = Number(v); break
      case '--streams': o.streams = Number(v); break
      case '--alpn': o.alpn = v; break
      default: die(2, `unknown argument ${k}`)
    }
  }
  if (!/^[0-9a-f]{64}$/i.test(o.node || '')) die(2, '--node must be 64 hex characters')
  return o
}

const toArray = (buf) => Array.from(buf)

let reopened = 0

// hold keeps one stream open on conn, reopening it when the agent ends it.
async function hold(conn, onOpen) {
  let first = true
  for (;;) {
    let bi
    try {
      bi = await conn.openBi()
      await bi.send.writeAll([0]) // the first byte of a u32 preamble length
    } catch {
      return // the connection is gone
    }
    if (first) onOpen()
    else reopened++
    first = false
    try {
      for (;;) {
        const d = await bi.recv.read(4096)
        if (!d || d.length === 0) break
      }
    } catch {
      // reset by the agent: open another
    }
  }
}

async function main() {
  const o = parseArgs(process.argv.slice(2))
  const target = EndpointId.fromBytes(toArray(Buffer.from(o.node, 'hex')))
  const total = o.nodes * o.conns * o.streams
  let open = 0
  const onOpen = () => {
    if (++open === total) process.stdout.write(`ready ${total}\n`)
  }
  for (let n = 0; n < o.nodes; n++) {
    const b = Endpoint.builder()
    b.applyMinimal()
    b.relayMode(RelayMode.disabled())
    b.secretKey(toArray(crypto.randomBytes(32)))
    b.bindAddr('127.0.0.1:0')
    const ep = await b.bind()
    for (let c = 0; c < o.conns; c++) {
      let conn
      try {
        conn = await ep.connect(new EndpointAddr(target, null, o.addrs), toArray(Buffer.from(o.alpn)))
      } catch (e) {
        die(4, `connect: ${String((e && e.message) || e).split('\n')[0]}`)
      }
      for (let s = 0; s < o.streams; s++) hold(conn, onOpen)
    }
  }
  setInterval(() => {
    if (reopened) process.stdout.write(`reopened ${reopened}\n`)
  }, 1000).unref()
  process.stdin.on('end', () => process.exit(0))
  process.stdin.resume()
}

main().catch((e) => die(1, String((e && e.stack) || e)))
