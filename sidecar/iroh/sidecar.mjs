#!/usr/bin/env node
// agentd iroh sidecar.
//
// Owns one iroh endpoint (via @number0/iroh) and hands every stream to agentd
// over unix sockets. The full contract is docs/iroh-sidecar.md; in short:
//
//   stdin  : ONE JSON config line, then kept open; EOF on stdin => exit.
//   stdout : ONE JSON ready line {"node_id","addrs","relay"}, then optional
//            {"event":"addr",...} lines when our addresses change.
//   stderr : JSON log lines.
//   serve  : each accepted bi-stream => new connection to accept_socket,
//            header line {"remote_node_id","alpn"}, then raw bytes both ways.
//   dial   : listen on dial_socket; request line {"node_id","addrs","relay",
//            "alpn","timeout_ms"} => reply {"ok":true} or {"ok":false,...},
//            then raw bytes both ways.
import net from 'node:net'
import fs from 'node:fs'
import irohPkg from '@number0/iroh/index.js'

const { Endpoint, EndpointAddr, EndpointId, RelayMode, SecretKey } = irohPkg

const CHUNK = 64 * 1024 // max bytes per iroh read
const MAX_INFLIGHT = 2 // unix->iroh chunks queued before the socket is paused
const MAX_HEADER = 16 * 1024 // max length of a request line on the dial socket
const HEADER_TIMEOUT_MS = 10_000 // a dial client must send its request line within this
const DEFAULT_DIAL_TIMEOUT_MS = 10_000 // the binding itself waits ~30 s on a dead address
const MAX_DIAL_TIMEOUT_MS = 120_000
const CLOSE_TIMEOUT_MS = 2_000 // how long endpoint.close() may take on exit
const RESET_CODE = 1n // QUIC error code used when one side aborts
const ADDR_POLL_MS = 5_000 // how often our addresses are checked for changes
// Per remote NodeId (authenticated by TLS before any stream byte): a flood
// from one node must not take agentd's file descriptors or push out other
// nodes' streams. agentd bounds the streams still in their preamble itself.
const MAX_CONNS_PER_NODE = 8 // connections at once; more are closed
const MAX_STREAMS_PER_NODE = 256 // streams forwarded to agentd at once; more are reset
const STREAM_RATE_PER_NODE = 200 // new streams per second a node may open (sustained) ...
const STREAM_BURST_PER_NODE = 400 // ... and in a burst; beyond, its connection is closed
const LIMIT_LOG_MS = 10_000 // a node over a limit is logged at most this often

// ---------- logging (stderr, one JSON object a line) ----------

function log(level, msg, fields = {}) {
  const rec = { time: new Date().toISOString(), level, msg, ...fields }
  try {
    process.stderr.write(JSON.stringify(rec) + '\n')
  } catch {
    // stderr gone: nothing sensible to do
  }
}

// ---------- byte helpers (the binding wants plain Array<number>) ----------

function toArray(buf) {
  // A plain loop is ~7x faster than Array.from(buf) for 64 KiB chunks.
  const n = buf.length
  const a = new Array(n)
  for (let i = 0; i < n; i++) a[i] = buf[i]
  return a
}

const strBytes = (s) => toArray(Buffer.from(s, 'utf8'))
const hex = (bytes) => Buffer.from(bytes).toString('hex')

// cleanError turns a binding error (anyhow chain + backtrace) into one line.
function cleanError(e) {
  let s = String((e && e.message) || e)
  const bt = s.indexOf('Stack backtrace:')
  if (bt >= 0) s = s.slice(0, bt)
  return s
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && l !== 'Caused by:')
    .map((l) => l.replace(/\s*\(\/[^)]*\.rs:\d+:\d+\)$/, '')) // drop "(path.rs:12:3)"
    .join(': ')
}

function parseNodeId(s) {
  if (typeof s !== 'string' || s === '') throw new Error('node_id is required')
  if (/^[0-9a-fA-F]{64}$/.test(s)) return EndpointId.fromBytes(toArray(Buffer.from(s, 'hex')))
  return EndpointId.fromString(s) // other encodings the binding understands
}

// ---------- config ----------

function readConfigLine() {
  return new Promise((resolve, reject) => {
    let buf = ''
    const onData = (chunk) => {
      buf += chunk
      const i = buf.indexOf('\n')
      if (i >= 0) {
        cleanup()
        resolve(buf.slice(0, i))
      } else if (buf.length > 1 << 20) {
        cleanup()
        reject(new Error('config line longer than 1 MiB'))
      }
    }
    const onEnd = () => {
      cleanup()
      if (buf.trim()) resolve(buf)
      else reject(new Error('stdin closed before the config line'))
    }
    const cleanup = () => {
      process.stdin.off('data', onData)
      process.stdin.off('end', onEnd)
      process.stdin.pause()
    }
    process.stdin.setEncoding('utf8')
    process.stdin.on('data', onData)
    process.stdin.on('end', onEnd)
  })
}

function validateConfig(cfg) {
  if (!cfg || typeof cfg !== 'object') throw new Error('config must be a JSON object')
  if (cfg.mode !== 'serve' && cfg.mode !== 'dial') throw new Error('mode must be "serve" or "dial"')
  if (typeof cfg.secret_key_hex !== 'string' || !/^[0-9a-fA-F]{64}$/.test(cfg.secret_key_hex)) {
    throw new Error('secret_key_hex must be 64 hex chars (a 32-byte Ed25519 seed)')
  }
  cfg.relay = cfg.relay || 'default'
  cfg.preset = cfg.preset || 'n0'
  if (cfg.preset !== 'n0' && cfg.preset !== 'minimal') throw new Error('preset must be "n0" or "minimal"')
  cfg.alpns = cfg.alpns || []
  if (!Array.isArray(cfg.alpns) || cfg.alpns.some((a) => typeof a !== 'string' || a === '')) {
    throw new Error('alpns must be an array of non-empty strings')
  }
  if (cfg.mode === 'serve') {
    if (!cfg.accept_socket) throw new Error('serve mode needs accept_socket')
    if (cfg.alpns.length === 0) throw new Error('serve mode needs at least one ALPN')
  }
  if (cfg.mode === 'dial' && !cfg.dial_socket) throw new Error('dial mode needs dial_socket')
  if (cfg.bind_port !== undefined && cfg.bind_port !== null) {
    if (!Number.isInteger(cfg.bind_port) || cfg.bind_port < 0 || cfg.bind_port > 65535) {
      throw new Error('bind_port must be an integer 0..65535')
    }
  }
  return cfg
}

async function bindEndpoint(cfg) {
  const b = Endpoint.builder()
  const relayOff = cfg.relay === 'disabled'
  if (cfg.preset === 'minimal') b.applyMinimal()
  else if (relayOff) b.applyN0DisableRelay()
  else b.applyN0()
  if (relayOff) b.relayMode(RelayMode.disabled())
  else if (cfg.relay !== 'default') b.relayMode(RelayMode.customFromUrls([cfg.relay]))
  b.secretKey(toArray(Buffer.from(cfg.secret_key_hex, 'hex')))
  if (cfg.mode === 'serve') b.alpns(cfg.alpns.map(strBytes))
  if (cfg.bind_host || (cfg.bind_port !== undefined && cfg.bind_port !== null)) {
    const host = cfg.bind_host || '0.0.0.0'
    const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host
    b.bindAddr(`${h}:${cfg.bind_port || 0}`)
  }
  return await b.bind()
}

function addrInfo(ep) {
  const a = ep.addr()
  return { node_id: hex(ep.id().toBytes()), addrs: a.directAddresses(), relay: a.relayUrl() || '' }
}

// ---------- byte pumps ----------

// waitDrain resolves when sock can take more data (or is gone).
function waitDrain(sock) {
  return new Promise((resolve) => {
    const done = () => {
      sock.off('drain', done)
      sock.off('close', done)
      resolve()
    }
    sock.on('drain', done)
    sock.on('close', done)
  })
}

// pipeStream copies bytes both ways between a unix socket and an iroh
// bi-stream, mapping half-close (socket FIN <-> QUIC finish) and aborts
// (socket error/close <-> stream reset/stop). Backpressure: the socket is
// paused while MAX_INFLIGHT chunks wait to be written to iroh, and iroh is not
// read while the socket's write buffer is full.
function pipeStream(sock, send, recv, fields) {
  let upDone = false // unix -> iroh finished (finish() or reset())
  let downDone = false // iroh -> unix finished (end() or stop())
  let sawEnd = false // the unix side sent FIN: everything it wrote was read
  let chain = Promise.resolve() // pending iroh writes, in order

  const resetUp = (why) => {
    if (upDone) return
    upDone = true
    log('debug', 'stream send reset', { ...fields, reason: why })
    send.reset(RESET_CODE).catch(() => {})
  }
  const stopDown = (why) => {
    if (downDone) return
    downDone = true
    log('debug', 'stream recv stopped', { ...fields, reason: why })
    recv.stop(RESET_CODE).catch(() => {})
  }

  // unix -> iroh
  let inflight = 0 // chunks handed to the chain and not yet written
  sock.on('data', (chunk) => {
    if (upDone) return
    if (++inflight >= MAX_INFLIGHT) sock.pause()
    const arr = toArray(chunk) // convert now, overlapping the pending write
    chain = chain
      .then(() => (upDone ? undefined : send.writeAll(arr)))
      .then(
        () => {
          if (--inflight < MAX_INFLIGHT && !sock.destroyed && sock.isPaused()) sock.resume()
        },
        (e) => {
          // The peer stopped reading or the connection died.
          resetUp('iroh write: ' + cleanError(e))
          stopDown('iroh write failed')
          sock.destroy()
        },
      )
  })
  sock.on('end', () => {
    sawEnd = true
    chain = chain.then(() => {
      if (upDone) return
      upDone = true
      return send.finish().catch((e) => log('debug', 'finish failed', { ...fields, err: cleanError(e) }))
    })
  })
  sock.on('error', (e) => {
    stopDown('unix socket: ' + e.message)
    if (!sawEnd) resetUp('unix socket: ' + e.message)
  })
  sock.on('close', () => {
    stopDown('unix socket closed')
    if (!sawEnd) resetUp('unix socket closed before FIN')
  })

  // iroh -> unix
  ;(async () => {
    try {
      for (;;) {
        const data = await recv.read(CHUNK)
        if (downDone || sock.destroyed) return
        if (data.length === 0) break // FIN from the peer
        if (!sock.write(Buffer.from(data))) await waitDrain(sock)
      }
      if (!downDone && !sock.destroyed) {
        downDone = true
        sock.end()
      }
    } catch (e) {
      if (downDone) return
      downDone = true
      // Peer reset the stream or the connection died: abort the unix side.
      log('debug', 'stream recv failed', { ...fields, err: cleanError(e) })
      resetUp('iroh read failed')
      sock.destroy()
    }
  })()
}

// ---------- serve ----------

async function serveLoop(ep, cfg, state) {
  for (;;) {
    let incoming
    try {
      incoming = await ep.acceptNext()
    } catch (e) {
      if (state.closing) return
      log('warn', 'accept failed', { err: cleanError(e) })
      continue
    }
    if (!incoming) return // endpoint closed
    handleIncoming(incoming, cfg, state).catch((e) => {
      if (!state.closing) log('info', 'incoming connection failed', { err: cleanError(e) })
    })
  }
}

// nodeUse counts what each remote node holds: {conns, streams, logged}.
const nodeUse = new Map()

function use(remote) {
  let u = nodeUse.get(remote)
  if (!u) {
    u = { conns: 0, streams: 0, logged: 0, tokens: STREAM_BURST_PER_NODE, at: Date.now() }
    nodeUse.set(remote, u)
  }
  return u
}

// release forgets an idle node once its stream budget has refilled (until
// then, reconnecting must not give it a fresh budget); sweepNodes catches
// the nodes that went idle with a spent budget.
function release(remote, u) {
  if (u.conns === 0 && u.streams === 0 && refill(u) >= STREAM_BURST_PER_NODE) nodeUse.delete(remote)
}

function sweepNodes() {
  for (const [remote, u] of nodeUse) release(remote, u)
}

function refill(u) {
  const now = Date.now()
  u.tokens = Math.min(STREAM_BURST_PER_NODE, u.tokens + ((now - u.at) * STREAM_RATE_PER_NODE) / 1000)
  u.at = now
  return u.tokens
}

// takeStream spends one token of the node's stream budget (a token bucket:
// a node that resets and reopens streams as fast as it can would otherwise
// keep the sidecar and agentd busy at no cost to itself).
function takeStream(u) {
  if (refill(u) < 1) return false
  u.tokens--
  return true
}

function logLimit(u, msg, fields) {
  const now = Date.now()
  if (now - u.logged < LIMIT_LOG_MS) return
  u.logged = now
  log('warn', msg, fields)
}

async function handleIncoming(incoming, cfg, state) {
  const accepting = await incoming.accept()
  const conn = await accepting.connect()
  const remote = hex(conn.remoteId().toBytes())
  const alpn = Buffer.from(conn.alpn()).toString('utf8')
  const u = use(remote)
  if (u.conns >= MAX_CONNS_PER_NODE) {
    logLimit(u, 'node over its connection limit; closing the new connection', { remote_node_id: remote, alpn, limit: MAX_CONNS_PER_NODE })
    release(remote, u)
    try {
      conn.close(RESET_CODE, strBytes('too many connections'))
    } catch {
      // already closed
    }
    return
  }
  u.conns++
  log('info', 'connection accepted', { remote_node_id: remote, alpn })
  drainDatagrams(conn)
  try {
    for (;;) {
      let bi
      try {
        bi = await conn.acceptBi()
      } catch (e) {
        log('info', 'connection closed', { remote_node_id: remote, alpn, reason: cleanError(e) })
        return
      }
      if (!takeStream(u)) {
        logLimit(u, 'node opens streams too fast; closing its connection', { remote_node_id: remote, alpn, rate: STREAM_RATE_PER_NODE, burst: STREAM_BURST_PER_NODE })
        try {
          conn.close(RESET_CODE, strBytes('too many streams'))
        } catch {
          // already closed
        }
        return
      }
      if (u.streams >= MAX_STREAMS_PER_NODE) {
        logLimit(u, 'node over its stream limit; resetting new streams', { remote_node_id: remote, alpn, limit: MAX_STREAMS_PER_NODE })
        bi.send.reset(RESET_CODE).catch(() => {})
        bi.recv.stop(RESET_CODE).catch(() => {})
        continue
      }
      u.streams++
      forwardAccepted(bi, remote, alpn, cfg, () => {
        u.streams--
        release(remote, u)
      })
    }
  } finally {
    u.conns--
    release(remote, u)
  }
}

// drainDatagrams discards datagrams (dialers send them as liveness probes) so
// they do not pile up in the connection's receive buffer.
async function drainDatagrams(conn) {
  try {
    for (;;) await conn.readDatagram()
  } catch {
    // connection closed
  }
}

function forwardAccepted(bi, remote, alpn, cfg, onDone) {
  const send = bi.send
  const recv = bi.recv
  const fields = { remote_node_id: remote, alpn }
  const sock = net.createConnection({ path: cfg.accept_socket, allowHalfOpen: true })
  sock.once('close', onDone) // after a failed connect too
  const onConnectError = (e) => {
    log('warn', 'cannot reach agentd accept socket; stream reset', { ...fields, err: e.message })
    send.reset(RESET_CODE).catch(() => {})
    recv.stop(RESET_CODE).catch(() => {})
  }
  sock.once('error', onConnectError)
  sock.once('connect', () => {
    sock.off('error', onConnectError)
    sock.on('error', () => {}) // logged by pipeStream's handler
    sock.write(JSON.stringify({ remote_node_id: remote, alpn }) + '\n')
    pipeStream(sock, send, recv, fields)
  })
}

// ---------- dial ----------

// readLine reads one '\n'-terminated line from sock and pushes back any bytes
// that followed it, so the socket can then be consumed as a plain stream.
function readLine(sock, max, timeoutMs) {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0)
    const timer = setTimeout(() => finish(new Error(`no request line within ${timeoutMs} ms`)), timeoutMs)
    const finish = (err, line) => {
      clearTimeout(timer)
      sock.off('readable', onReadable)
      sock.off('end', onEnd)
      sock.off('error', onError)
      if (err) reject(err)
      else resolve(line)
    }
    const onReadable = () => {
      let c
      while ((c = sock.read()) !== null) {
        buf = buf.length ? Buffer.concat([buf, c]) : c
        const i = buf.indexOf(10)
        if (i >= 0) {
          const rest = buf.subarray(i + 1)
          if (rest.length) sock.unshift(rest)
          finish(null, buf.subarray(0, i).toString('utf8'))
          return
        }
        if (buf.length > max) {
          finish(new Error(`request line longer than ${max} bytes`))
          return
        }
      }
    }
    const onEnd = () => finish(new Error('closed before the request line'))
    const onError = (e) => finish(e)
    sock.on('readable', onReadable)
    sock.on('end', onEnd)
    sock.on('error', onError)
  })
}

function withTimeout(promise, ms, what) {
  let timer
  const t = new Promise((_, reject) => {
    timer = setTimeout(() => reject(Object.assign(new Error(what), { code: 'timeout' })), ms)
  })
  return Promise.race([promise, t]).finally(() => clearTimeout(timer))
}

function classify(e) {
  if (e && e.code === 'timeout') return { code: 'timeout', error: e.message }
  const msg = cleanError(e)
  if (/support any known protocol|NoApplicationProtocol|no application protocol/i.test(msg)) {
    return { code: 'alpn_refused', error: 'alpn refused: the remote node does not accept this ALPN (' + msg + ')' }
  }
  if (/No addressing information/i.test(msg)) {
    return { code: 'unreachable', error: 'unreachable: no address known for the node; give addrs or a relay (' + msg + ')' }
  }
  return { code: 'unreachable', error: 'unreachable: ' + msg }
}

// Dialer keeps one iroh connection per (node, alpn) and reuses it. A cached
// connection whose peer died is only noticed by QUIC after its 30 s idle
// timeout (measured; no keep-alives flow while idle, and a restarted peer
// sends no reset), so every reuse is preceded by a liveness probe: two
// full-size datagrams make the peer ACK at once, which shows up in the
// receive counters after one RTT (~1 ms on loopback, measured; one small
// datagram waits for the 25 ms ACK delay).
const PROBE_MIN_MS = 500 // wait at least this long for a probe's ACK
const PROBE_SIZE = 1_200 // bytes per probe datagram (two are sent)
const PROBE_RTTS = 4 // ... or this many RTTs if longer

class Dialer {
  constructor(ep) {
    this.ep = ep
    this.conns = new Map() // key -> {p: Promise<Connection>}
  }

  newEntry(key, req, nodeId) {
    const addr = new EndpointAddr(nodeId, req.relay || null, req.addrs || [])
    const ent = { p: this.ep.connect(addr, strBytes(req.alpn)) }
    this.conns.set(key, ent)
    ent.p.then(
      (conn) => conn.closed().then(() => this.drop(key, ent)),
      () => this.drop(key, ent),
    )
    return ent
  }

  drop(key, ent) {
    if (this.conns.get(key) === ent) this.conns.delete(key)
  }

  async alive(conn, deadline) {
    if (conn.closeReason() !== null) return false
    const max = conn.maxDatagramSize()
    if (max === null) return true // the peer takes no datagrams: cannot probe
    const before = conn.stats().udpRxDatagrams
    try {
      const probe = new Array(Math.min(PROBE_SIZE, max)).fill(0)
      conn.sendDatagram(probe)
      conn.sendDatagram(probe)
    } catch {
      return false
    }
    const now = Date.now()
    const limit = now + Math.min(Math.max(PROBE_MIN_MS, PROBE_RTTS * (conn.rtt() || 0)), Math.max(0, deadline - now))
    for (;;) {
      await new Promise((r) => setImmediate(r))
      if (conn.stats().udpRxDatagrams !== before) return true
      if (Date.now() >= limit) return false
      if (Date.now() - now > 2) await new Promise((r) => setTimeout(r, 1))
    }
  }

  async connection(req, nodeId, deadline, what) {
    const key = hex(nodeId.toBytes()) + '\n' + req.alpn
    let ent = this.conns.get(key)
    if (ent) {
      let conn = null
      try {
        conn = await withTimeout(ent.p, Math.max(1, deadline - Date.now()), what)
      } catch (e) {
        if (e && e.code === 'timeout') throw e
        this.drop(key, ent) // that attempt failed: try a fresh one
      }
      if (conn) {
        if (await this.alive(conn, deadline)) return { key, ent, conn }
        // Closing it matters: while the stale connection lives, iroh keeps
        // using its old path and a fresh connect to the same node times out
        // (measured). PROBE_MIN_MS is generous so a live one is not closed.
        log('info', 'cached connection did not answer a probe; reconnecting', { node_id: req.node_id, alpn: req.alpn })
        this.drop(key, ent)
        try {
          conn.close(0n, strBytes('stale'))
        } catch {
          // already closed
        }
      }
    }
    ent = this.newEntry(key, req, nodeId)
    const conn = await withTimeout(ent.p, Math.max(1, deadline - Date.now()), what)
    return { key, ent, conn }
  }

  async openStream(req) {
    const nodeId = parseNodeId(req.node_id)
    const timeoutMs = Math.min(Number(req.timeout_ms) > 0 ? Number(req.timeout_ms) : DEFAULT_DIAL_TIMEOUT_MS, MAX_DIAL_TIMEOUT_MS)
    const deadline = Date.now() + timeoutMs
    const what = `timeout: no connection to node ${req.node_id} within ${timeoutMs} ms`
    for (let attempt = 0; ; attempt++) {
      const { key, ent, conn } = await this.connection(req, nodeId, deadline, what)
      try {
        return await withTimeout(conn.openBi(), Math.max(1, deadline - Date.now()), what)
      } catch (e) {
        // The connection died under us; retry once with a fresh one.
        this.drop(key, ent)
        if (attempt > 0 || (e && e.code === 'timeout')) throw e
      }
    }
  }
}

function serveDialSocket(path, dialer, state) {
  try {
    fs.unlinkSync(path)
  } catch {
    // not there: fine
  }
  const server = net.createServer({ allowHalfOpen: true }, (sock) => {
    handleDial(sock, dialer).catch((e) => log('warn', 'dial handler failed', { err: cleanError(e) }))
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(path, () => {
      server.off('error', reject)
      server.on('error', (e) => log('error', 'dial socket error', { err: e.message }))
      try {
        fs.chmodSync(path, 0o600)
      } catch (e) {
        log('warn', 'chmod dial socket', { err: e.message })
      }
      state.dialServer = server
      resolve(server)
    })
  })
}

async function handleDial(sock, dialer) {
  // Errors before pipeStream takes over (e.g. EPIPE when agentd gave up).
  const early = (e) => log('debug', 'dial socket error', { err: e.message })
  sock.on('error', early)
  const reply = (obj) => sock.write(JSON.stringify(obj) + '\n')
  let req
  try {
    const line = await readLine(sock, MAX_HEADER, HEADER_TIMEOUT_MS)
    req = JSON.parse(line)
    if (!req || typeof req !== 'object') throw new Error('request must be a JSON object')
    if (typeof req.alpn !== 'string' || req.alpn === '') throw new Error('alpn is required')
    if (req.addrs !== undefined && req.addrs !== null && !Array.isArray(req.addrs)) throw new Error('addrs must be an array')
    parseNodeId(req.node_id)
  } catch (e) {
    if (!sock.destroyed) {
      reply({ ok: false, code: 'bad_request', error: 'bad request: ' + cleanError(e) })
      sock.end()
    }
    return
  }
  const fields = { node_id: req.node_id, alpn: req.alpn }
  const t0 = Date.now()
  let bi
  try {
    bi = await dialer.openStream(req)
  } catch (e) {
    const c = classify(e)
    log('info', 'dial failed', { ...fields, code: c.code, err: c.error, ms: Date.now() - t0 })
    if (!sock.destroyed) {
      reply({ ok: false, ...c })
      sock.end()
    }
    return
  }
  if (sock.destroyed) {
    bi.send.reset(RESET_CODE).catch(() => {})
    return
  }
  log('debug', 'stream opened', { ...fields, ms: Date.now() - t0 })
  reply({ ok: true })
  sock.off('error', early)
  pipeStream(sock, bi.send, bi.recv, fields)
}

// ---------- main ----------

async function main() {
  const state = { closing: false, dialServer: null, ep: null, cfg: null, poll: null }

  const shutdown = async (why, code = 0) => {
    if (state.closing) return
    state.closing = true
    log('info', 'shutting down', { reason: why })
    if (state.dialServer) state.dialServer.close()
    if (state.cfg && state.cfg.dial_socket) {
      try {
        fs.unlinkSync(state.cfg.dial_socket)
      } catch {
        // gone already
      }
    }
    if (state.poll) clearInterval(state.poll)
    if (state.ep) await withTimeout(state.ep.close(), CLOSE_TIMEOUT_MS, 'close').catch(() => {})
    process.exit(code)
  }
  process.on('SIGTERM', () => shutdown('SIGTERM'))
  process.on('SIGINT', () => shutdown('SIGINT'))

  let cfg
  try {
    cfg = validateConfig(JSON.parse(await readConfigLine()))
  } catch (e) {
    log('error', 'bad config', { err: e.message })
    process.exit(2)
  }
  state.cfg = cfg
  // From now on EOF on stdin means the parent is gone.
  process.stdin.on('end', () => shutdown('stdin closed'))
  process.stdin.on('error', () => shutdown('stdin error'))
  process.stdin.resume()

  let ep
  try {
    ep = await bindEndpoint(cfg)
  } catch (e) {
    log('error', 'bind endpoint', { err: cleanError(e) })
    process.exit(1)
  }
  state.ep = ep

  if (cfg.dial_socket) {
    try {
      await serveDialSocket(cfg.dial_socket, new Dialer(ep), state)
    } catch (e) {
      log('error', 'listen on dial socket', { path: cfg.dial_socket, err: e.message })
      await shutdown('dial socket failed', 1)
      return
    }
  }

  const info = addrInfo(ep)
  process.stdout.write(JSON.stringify(info) + '\n')
  log('info', 'ready', { mode: cfg.mode, ...info, alpns: cfg.alpns, preset: cfg.preset, relay_mode: cfg.relay })

  // Endpoint.watchAddr() of @number0/iroh 1.1.0 aborts the process ("there is
  // no reactor running", measured), so address changes are polled instead.
  let last = JSON.stringify({ addrs: info.addrs, relay: info.relay })
  state.poll = setInterval(() => {
    if (state.closing) return
    try {
      const a = ep.addr()
      const cur = JSON.stringify({ addrs: a.directAddresses(), relay: a.relayUrl() || '' })
      if (cur === last) return
      last = cur
      process.stdout.write(JSON.stringify({ event: 'addr', ...JSON.parse(cur) }) + '\n')
    } catch (e) {
      log('warn', 'poll addr', { err: cleanError(e) })
    }
  }, ADDR_POLL_MS)
  state.poll.unref()

  if (cfg.mode === 'serve') {
    setInterval(sweepNodes, LIMIT_LOG_MS).unref()
    serveLoop(ep, cfg, state).then(() => {
      if (!state.closing) shutdown('endpoint closed', 1)
    })
  }
}

process.on('uncaughtException', (e) => {
  log('error', 'uncaught exception', { err: cleanError(e), stack: e && e.stack })
  process.exit(1)
})

main().catch((e) => {
  log('error', 'fatal', { err: cleanError(e) })
  process.exit(1)
})
