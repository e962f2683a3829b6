#!/usr/bin/env node
// An ordinary WebSocket client (npm `ws`) talking to agentd through the
// loopback proxy, as any local tool would: no certificate, no iroh.
//
//   node ws-client.mjs ws://127.0.0.1:PORT/ws [--session ID] [--message TEXT] [--timeout-ms N]
//
// Prints the streamed reply and exits 0 at turn_complete; 3 when the proxy
// or the gateway refuses the upgrade (status printed), 5 on timeout, 1 else.
import WebSocket from 'ws'

function die(code, msg) {
  process.stderr.write(`ws-client: ${msg}\n`)
  process.exit(code)
}

const argv = process.argv.slice(2)
const url = argv.shift()
if (!url) die(2, 'usage: ws-client.mjs ws://127.0.0.1:PORT/ws [--session ID] [--message TEXT]')
const o = { session: 'ws-client', message: 'hello through the loopback proxy', timeoutMs: 60000 }
for (let i = 0; i < argv.length; i += 2) {
  const v = argv[i + 1]
  if (v === undefined) die(2, `${argv[i]} needs a value`)
  if (argv[i] === '--session') o.session = v
  else if (argv[i] === '--message') o.message = v
  else if (argv[i] === '--timeout-ms') o.timeoutMs = Number(v)
  else die(2, `unknown argument ${argv[i]}`)
}

const timer = setTimeout(() => die(5, `no turn_complete within ${o.timeoutMs} ms`), o.timeoutMs)
const ws = new WebSocket(url)
let streamed = false
ws.on('unexpected-response', (req, res) => {
  let body = ''
  res.on('data', (d) => (body += d))
  res.on('end', () => die(3, `refused: ${res.statusCode} ${body.trim()}`))
})
ws.on('error', (e) => die(1, e.message))
ws.on('close', (code, reason) => die(1, `closed before turn_complete: ${code} ${reason}`))
ws.on('message', (data) => {
  const msg = JSON.parse(data.toString())
  switch (msg.type) {
    case 'auth_ok':
      process.stderr.write(`connected to ${msg.agent_name} (${msg.version})\n`)
      ws.send(JSON.stringify({ type: 'session_open', session_id: o.session }))
      ws.send(JSON.stringify({ type: 'text_final', session_id: o.session, text: o.message }))
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
      ws.removeAllListeners('close')
      ws.close(1000)
      process.exit(0)
  }
})
