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
// stdout: "ready N" once each of the N stream slots has had a stream open
// that wrote its byte; every second "open N reopened M". A connection the
// agent closes is dialled again.
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
const opened = new Set() // slots that have had a stream open at least once

// hold keeps one stream open on conn for slot, reopening it when the agent
// ends it, until the connection is gone.
async function hold(conn, slot, onOpen) {
  for (;;) {
    let bi
    try {
      bi = await conn.openBi()
      await bi.send.writeAll([0]) // the first byte of a u32 preamble length
    } catch {
      return // the connection is gone
    }
    if (!opened.has(slot)) {
      opened.add(slot)
      onOpen()
    } else reopened++
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

// connection keeps one connection of the flood up, reconnecting when the
// agent closes it, each with its streams.
async function connection(ep, target, o, key, onOpen) {
  for (;;) {
    let conn
    try {
      conn = await ep.connect(new EndpointAddr(target, null, o.addrs), toArray(Buffer.from(o.alpn)))
    } catch (e) {
      process.stderr.write(`iroh-flood: connect: ${String((e && e.message) || e).split('\n')[0]}\n`)
      await new Promise((r) => setTimeout(r, 200))
      continue
    }
    const holds = []
    for (let s = 0; s < o.streams; s++) holds.push(hold(conn, `${key}/${s}`, onOpen))
    await Promise.all(holds)
    await new Promise((r) => setTimeout(r, 50))
  }
}

async function main() {
  const o = parseArgs(process.argv.slice(2))
  const target = EndpointId.fromBytes(toArray(Buffer.from(o.node, 'hex')))
  const total = o.nodes * o.conns * o.streams
  const onOpen = () => {
    if (opened.size === total) process.stdout.write(`ready ${total}\n`)
  }
  for (let n = 0; n < o.nodes; n++) {
    const b = Endpoint.builder()
    b.applyMinimal()
    b.relayMode(RelayMode.disabled())
    b.secretKey(toArray(crypto.randomBytes(32)))
    b.bindAddr('127.0.0.1:0')
    const ep = await b.bind()
    for (let c = 0; c < o.conns; c++) connection(ep, target, o, `${n}/${c}`, onOpen)
  }
  setInterval(() => {
    process.stdout.write(`open ${opened.size} reopened ${reopened}\n`)
  }, 1000).unref()
  process.stdin.on('end', () => process.exit(0))
  process.stdin.resume()
}

main().catch((e) => die(1, String((e && e.stack) || e)))
