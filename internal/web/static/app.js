// agentd web app: plain ES modules, no build step. Every call goes to this
// page's own origin (the loopback proxy), which adds the device certificate.
import { render } from './md.js';

const $ = s => document.querySelector(s);
// h builds an element; text children are text nodes, never HTML.
function h(tag, attrs = {}, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v == null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'html') el.innerHTML = v; // only render()'s output
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const k of kids.flat()) if (k != null) el.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return el;
}

class APIError extends Error { constructor(status, code, msg) { super(msg); this.status = status; this.code = code; } }
async function api(method, path, body, headers = {}) {
  const opt = { method, headers: { ...headers } };
  if (body instanceof FormData) opt.body = body;
  else if (body !== undefined) { opt.body = JSON.stringify(body); opt.headers['Content-Type'] = 'application/json'; }
  const res = await fetch(path, opt);
  const ct = res.headers.get('Content-Type') || '';
  const data = ct.includes('json') ? await res.json() : await res.blob();
  if (!res.ok) throw new APIError(res.status, data?.error?.code || 'error', data?.error?.message || res.statusText);
  data && typeof data === 'object' && Object.defineProperty(data, '_etag', { value: res.headers.get('ETag'), enumerable: false });
  return data;
}
const fileURL = p => '/api/files?path=' + encodeURIComponent(p);
const fmtTime = t => t ? new Date((typeof t === 'number' ? t * (t < 1e12 ? 1000 : 1) : Date.parse(t))).toLocaleString() : '';
const money = v => '$' + (Number(v) || 0).toFixed(4);

let me = { admin: false };

// --- WebSocket with reconnect ---------------------------------------------
const ws = {
  sock: null, backoff: 500, handlers: new Set(), opened: new Set(),
  connect() {
    const s = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');
    this.sock = s;
    s.onopen = () => { this.backoff = 500; setConn('connected'); this.opened.clear(); chat.reopen(); };
    s.onmessage = ev => { let m; try { m = JSON.parse(ev.data); } catch { return; } for (const f of this.handlers) f(m); };
    s.onclose = () => {
      setConn(`disconnected — reconnecting in ${Math.round(this.backoff / 1000)} s`);
      setTimeout(() => this.connect(), this.backoff);
      this.backoff = Math.min(this.backoff * 2, 10000);
    };
  },
  send(m) { if (this.sock?.readyState === 1) { this.sock.send(JSON.stringify(m)); return true; } return false; },
  open(sid) { if (!this.opened.has(sid) && this.send({ type: 'session_open', session_id: sid })) this.opened.add(sid); },
};
function setConn(t) { $('#conn').textContent = t; }

// --- chat -------------------------------------------------------------------
const titles = JSON.parse(localStorage.getItem('agentd.titles') || '{}');
const saveTitles = () => localStorage.setItem('agentd.titles', JSON.stringify(titles));

const chat = {
  sid: localStorage.getItem('agentd.session') || '',
  live: null, // the assistant bubble being streamed
  text: '', pending: [], audio: [], el: null,
  reopen() { if (this.sid) ws.open(this.sid); },
  log() { return this.el?.querySelector('.log'); },
  scroll() { const l = this.log(); if (l) l.scrollTop = l.scrollHeight; },
  add(role, text, atts) {
    const l = this.log(); if (!l) return null;
    const b = h('div', { class: 'msg ' + role, role: role === 'note' ? 'status' : null });
    if (role === 'user' || role === 'assistant') b.innerHTML = render(text);
    else b.textContent = text;
    for (const a of atts || []) b.append(attachment(a));
    l.append(b); this.scroll(); return b;
  },
  status(t) { const s = this.el?.querySelector('.status'); if (s) s.textContent = t || ''; },
  frame(m) {
    if (m.session_id && m.session_id !== this.sid) return;
    switch (m.type) {
      case 'delta':
        if (!this.live) { this.live = this.add('assistant', ''); this.text = ''; }
        this.text += m.text; this.live.innerHTML = render(this.text); this.scroll(); break;
      case 'status': this.status(m.text); break;
      case 'queued': this.add('note', `queued #${m.position}`); break;
      case 'response': {
        const b = this.live || this.add('assistant', '');
        b.innerHTML = render(m.text + (m.interrupted ? '\n\n*(stopped)*' : ''));
        for (const a of m.attachments || []) b.append(attachment(a));
        this.live = null; this.text = ''; this.scroll(); break;
      }
      case 'turn_complete': this.status(m.usage?.cost_usd ? `cost ${money(m.usage.cost_usd)}` : ''); this.live = null; break;
      case 'error': this.add('error', m.text); this.live = null; break;
      case 'command_result': this.add('note', m.text); if (m.new_session_id) { sessions.select(m.new_session_id); } break;
      case 'audio_start': this.audio = []; break;
      case 'audio_chunk': this.audio[m.seq] = Uint8Array.from(atob(m.data), c => c.charCodeAt(0)); break;
      case 'audio_end': {
        const a = h('audio', { controls: true, src: URL.createObjectURL(new Blob(this.audio, { type: 'audio/ogg' })), 'aria-label': 'spoken reply' });
        this.log()?.lastElementChild?.append(a); a.play().catch(() => {}); break;
      }
    }
    if (m.type === 'resource_event' && m.resource === 'session') sessions.load();
  },
  send() {
    const ta = this.el.querySelector('textarea');
    const text = ta.value.trim();
    if (!text && !this.pending.length) return;
    if (!this.sid) sessions.create();
    ws.open(this.sid);
    const atts = this.pending.map(p => ({ type: p.mime.startsWith('image/') ? 'image' : 'file', path: p.path, filename: p.filename }));
    if (text.startsWith('/')) {
      const [name, ...args] = text.slice(1).split(' ');
      ws.send({ type: 'command', name, args: args.join(' '), session_id: this.sid });
    } else if (!ws.send({ type: 'text_final', text, session_id: this.sid, attachments: atts })) {
      this.add('error', 'not connected; your message was not sent'); return;
    }
    this.add('user', text, atts);
    ta.value = ''; this.pending = []; this.chips();
  },
  async upload(files) {
    for (const f of files) {
      const fd = new FormData(); fd.append('file', f, f.name);
      try { this.pending.push(await api('POST', '/api/upload', fd)); }
      catch (e) { this.add('error', `${f.name}: ${e.message}`); }
    }
    this.chips();
  },
  chips() {
    const c = this.el.querySelector('.chips'); c.replaceChildren(...this.pending.map(p => h('span', { class: 'chip' }, '📎 ' + p.filename)));
  },
  recorder: null,
  async voice(btn) {
    if (this.recorder) { this.recorder.stop(); return; }
    let stream;
    try { stream = await navigator.mediaDevices.getUserMedia({ audio: true }); }
    catch (e) { this.add('error', 'microphone: ' + e.message); return; }
    const parts = []; const rec = new MediaRecorder(stream); this.recorder = rec;
    btn.textContent = '■ Stop'; btn.setAttribute('aria-pressed', 'true');
    rec.ondataavailable = e => parts.push(e.data);
    rec.onstop = async () => {
      stream.getTracks().forEach(t => t.stop()); this.recorder = null;
      btn.textContent = '🎤 Voice'; btn.setAttribute('aria-pressed', 'false');
      const buf = new Uint8Array(await new Blob(parts).arrayBuffer());
      if (!this.sid) sessions.create();
      ws.open(this.sid);
      const n = 48 << 10, total = Math.max(1, Math.ceil(buf.length / n));
      for (let i = 0; i < total; i++) {
        let bin = ''; for (const b of buf.subarray(i * n, (i + 1) * n)) bin += String.fromCharCode(b);
        ws.send({ type: 'audio_chunk_in', session_id: this.sid, data: btoa(bin), seq: i, is_end: i === total - 1 });
      }
      this.add('user', '🎤 (voice message)');
    };
    rec.start();
  },
};
ws.handlers.add(m => chat.frame(m));

function attachment(a) {
  const name = a.filename || a.path.split('/').pop();
  if (a.type === 'image') return h('a', { href: fileURL(a.path), target: '_blank', rel: 'noopener' }, h('img', { src: fileURL(a.path), alt: name }));
  if (a.type === 'voice') return h('audio', { controls: true, src: fileURL(a.path), 'aria-label': name });
  return h('div', {}, h('a', { href: fileURL(a.path), download: name }, '📎 ' + name));
}

const sessions = {
  list: [], models: [],
  async load() {
    try { this.list = (await api('GET', '/api/sessions')).sessions || []; } catch { this.list = []; }
    this.draw();
  },
  create() {
    const sid = 'web-' + crypto.getRandomValues(new Uint32Array(2)).join('').slice(0, 12);
    this.select(sid, true);
    return sid;
  },
  // select shows session sid; a fresh one has no history to load.
  async select(sid, fresh = false) {
    chat.sid = sid; localStorage.setItem('agentd.session', sid); ws.open(sid);
    if (!this.list.some(s => s.id === sid)) this.list.unshift({ id: sid, message_count: 0 });
    this.draw();
    const l = chat.log(); if (!l) return;
    l.replaceChildren();
    if (fresh) return;
    try {
      const { messages } = await api('GET', `/api/sessions/${encodeURIComponent(sid)}/messages?limit=100`);
      for (const m of messages || []) chat.add(m.role === 'user' ? 'user' : 'assistant', m.text, m.attachments);
    } catch (e) { if (e.status !== 404) chat.add('error', e.message); }
  },
  draw() {
    const box = chat.el?.querySelector('.sessions ul'); if (!box) return;
    box.replaceChildren(...this.list.map(s => h('li', {}, h('button', {
      class: 's', 'aria-current': s.id === chat.sid ? 'true' : 'false', onclick: () => this.select(s.id),
    }, titles[s.id] || s.title || s.id, s.queued ? ` (${s.queued} queued)` : ''))));
    const cur = this.list.find(s => s.id === chat.sid);
    const pin = chat.el.querySelector('#pin'); if (pin && cur) pin.value = cur.pinned_model || '';
  },
  async act(what) {
    const sid = chat.sid; if (!sid) return;
    try {
      if (what === 'rename') { const t = prompt('Name of this session', titles[sid] || sid); if (t != null) { titles[sid] = t; saveTitles(); } }
      if (what === 'clear') { await api('POST', `/api/sessions/${encodeURIComponent(sid)}/clear`); chat.log().replaceChildren(); }
      if (what === 'delete' && confirm('Delete this session and its history?')) {
        await api('DELETE', `/api/sessions/${encodeURIComponent(sid)}`); chat.sid = ''; localStorage.removeItem('agentd.session'); chat.log().replaceChildren();
      }
    } catch (e) { chat.add('error', e.message); }
    this.load();
  },
};

async function pageChat(main) {
  let models = [];
  try { models = (await api('GET', '/api/models')).models || []; } catch {}
  const ta = h('textarea', { 'aria-label': 'Message', placeholder: 'Message the agent (Enter sends, Shift+Enter for a new line; /help for commands)',
    onkeydown: e => { if (e.key === 'Enter' && !e.shiftKey) { e.preventDefault(); chat.send(); } } });
  const conv = h('section', { class: 'conv', 'aria-label': 'Conversation' },
    h('div', { class: 'row' },
      h('label', { for: 'pin' }, 'Model'),
      h('select', { id: 'pin', onchange: async e => {
        try { await api('POST', `/api/sessions/${encodeURIComponent(chat.sid || sessions.create())}/pin`, { model: e.target.value }); sessions.load(); }
        catch (err) { chat.add('error', err.message); } } },
        h('option', { value: '' }, 'default'), models.map(m => h('option', { value: m.id }, m.id))),
      h('button', { onclick: () => sessions.act('rename') }, 'Rename'),
      h('button', { onclick: () => sessions.act('clear') }, 'Clear'),
      h('button', { onclick: () => sessions.act('delete') }, 'Delete')),
    h('div', { class: 'log', role: 'log', 'aria-live': 'polite' }),
    h('div', { class: 'status', 'aria-live': 'polite' }),
    h('div', { class: 'chips' }),
    h('div', { class: 'compose' }, ta,
      h('label', { class: 'mut' }, h('span', { class: 'skip' }, 'Attach files'),
        h('input', { type: 'file', multiple: true, 'aria-label': 'Attach files', onchange: e => chat.upload(e.target.files) })),
      window.MediaRecorder ? h('button', { id: 'voice', 'aria-pressed': 'false', onclick: e => chat.voice(e.currentTarget) }, '🎤 Voice') : null,
      h('button', { id: 'stop', onclick: () => chat.sid && ws.send({ type: 'interrupt', session_id: chat.sid }) }, 'Interrupt'),
      h('button', { id: 'send', class: 'primary', onclick: () => chat.send() }, 'Send')));
  conv.addEventListener('dragover', e => { e.preventDefault(); conv.classList.add('drop'); });
  conv.addEventListener('dragleave', () => conv.classList.remove('drop'));
  conv.addEventListener('drop', e => { e.preventDefault(); conv.classList.remove('drop'); chat.upload(e.dataTransfer.files); });
  main.append(h('div', { class: 'chat' },
    h('aside', { class: 'sessions', 'aria-label': 'Sessions' },
      h('button', { class: 'primary', onclick: () => sessions.create() }, '+ New session'), h('ul', { role: 'list' })),
    conv));
  chat.el = main;
  await sessions.load();
  if (chat.sid) sessions.select(chat.sid);
  ta.focus();
}

// --- vault ------------------------------------------------------------------
async function pageVault(main, params) {
  const list = h('div', { class: 'notes', role: 'navigation', 'aria-label': 'Notes' });
  const view = h('article', { class: 'note', 'aria-live': 'polite' });
  const q = h('input', { type: 'search', 'aria-label': 'Search notes', placeholder: 'Search notes' });
  const showList = items => list.replaceChildren(...items.map(n => h('a', { href: '#/vault?note=' + encodeURIComponent(n.path) },
    n.title || n.path, n.snippet ? h('div', { class: 'mut', html: render(n.snippet.replace(/<\/?b>/g, '**')) }) : null)));
  q.addEventListener('keydown', async e => {
    if (e.key !== 'Enter') return;
    try { showList(q.value.trim() ? (await api('GET', '/api/vault/search?q=' + encodeURIComponent(q.value))).results : (await api('GET', '/api/vault/notes')).notes); }
    catch (err) { list.replaceChildren(h('p', { class: 'err' }, err.message)); }
  });
  main.append(h('h1', {}, 'Vault'), h('div', { class: 'vault' }, h('div', {}, q, list), view),
    h('h2', {}, 'Links'), h('div', { id: 'graph' }));
  try { showList((await api('GET', '/api/vault/notes')).notes || []); } catch (e) { list.append(h('p', { class: 'err' }, e.message)); }
  if (params.get('note')) openNote(view, params.get('note'));
  else view.append(h('p', { class: 'mut' }, 'Pick a note, or search.'));
  drawGraph($('#graph'));
}

async function openNote(view, path) {
  let n;
  try { n = await api('GET', '/api/vault/notes/' + path.split('/').map(encodeURIComponent).join('/')); }
  catch (e) { view.replaceChildren(h('p', { class: 'err' }, e.message)); return; }
  const byTarget = {};
  for (const l of n.links || []) if (l.path) byTarget[l.target.toLowerCase()] = l.path;
  const wikilink = t => byTarget[t.toLowerCase()] ? '#/vault?note=' + encodeURIComponent(byTarget[t.toLowerCase()]) : null;
  const edit = h('button', {}, 'Edit');
  view.replaceChildren(h('h2', {}, n.title || n.path), h('div', { class: 'row mut' }, n.path, ' · ', fmtTime(n.modified), edit),
    h('div', { class: 'body', html: render(n.body, { wikilink }) }),
    h('h3', {}, 'Backlinks'), (n.backlinks || []).length ? h('ul', {}, n.backlinks.map(b => h('li', {}, h('a', { href: '#/vault?note=' + encodeURIComponent(b.path) }, b.title || b.path)))) : h('p', { class: 'mut' }, 'none'));
  edit.onclick = () => {
    const ta = h('textarea', { 'aria-label': 'Note content' }); ta.value = n.content;
    const msg = h('p', { role: 'alert' });
    const save = h('button', { class: 'primary', onclick: async () => {
      try { await api('PUT', '/api/vault/notes/' + path.split('/').map(encodeURIComponent).join('/'), { content: ta.value }, n._etag ? { 'If-Match': n._etag } : {}); openNote(view, path); }
      catch (e) { msg.className = 'err'; msg.textContent = e.status === 409 ? 'Conflict: the note changed since you opened it (edited in Obsidian?). Copy your text, reload, and merge.' : e.message; }
    } }, 'Save');
    view.replaceChildren(h('h2', {}, 'Edit ' + n.path), ta, h('div', { class: 'row' }, save, h('button', { onclick: () => openNote(view, path) }, 'Cancel')), msg);
  };
}

async function drawGraph(box) {
  let g; try { g = await api('GET', '/api/vault/graph'); } catch { return; }
  const nodes = (g.nodes || []).slice(0, 300), W = 800, H = 380, idx = {};
  nodes.forEach((n, i) => { const a = 2 * Math.PI * i / Math.max(1, nodes.length); idx[n.id] = { x: W / 2 + Math.cos(a) * (W / 2 - 60), y: H / 2 + Math.sin(a) * (H / 2 - 30), n }; });
  const NS = 'http://www.w3.org/2000/svg', svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('class', 'graph'); svg.setAttribute('viewBox', `0 0 ${W} ${H}`); svg.setAttribute('role', 'img'); svg.setAttribute('aria-label', `Link graph: ${nodes.length} notes, ${(g.edges || []).length} links`);
  const el = (t, a) => { const e = document.createElementNS(NS, t); for (const k in a) e.setAttribute(k, a[k]); return e; };
  for (const e of g.edges || []) { const a = idx[e.source], b = idx[e.target]; if (a && b) svg.append(el('line', { x1: a.x, y1: a.y, x2: b.x, y2: b.y })); }
  for (const p of Object.values(idx)) {
    const link = el('a', { href: '#/vault?note=' + encodeURIComponent(p.n.id) });
    link.append(el('circle', { cx: p.x, cy: p.y, r: 4 }));
    const t = el('text', { x: p.x + 6, y: p.y + 3 }); t.textContent = p.n.label || p.n.id; link.append(t); svg.append(link);
  }
  box.replaceChildren(svg);
}

// --- tables of the other resources --------------------------------------------
function table(cols, rows, actions) {
  return h('table', {}, h('thead', {}, h('tr', {}, cols.map(c => h('th', { scope: 'col' }, c[0])), actions ? h('th', {}, '') : null)),
    h('tbody', {}, rows.map(r => h('tr', {}, cols.map(c => h('td', {}, c[1](r) ?? '')), actions ? h('td', {}, actions(r)) : null))));
}
async function section(main, title, path, key, cols, actions) {
  main.append(h('h2', {}, title));
  try { const d = await api('GET', path); main.append(table(cols, d[key] || [], actions)); }
  catch (e) { main.append(h('p', { class: e.status === 404 ? 'mut' : 'err' }, e.status === 404 ? 'not available on this agent' : e.message)); }
}
const act = (label, fn, reload) => h('button', { onclick: async () => { try { await fn(); } catch (e) { alert(e.message); } reload(); } }, label);

async function pageUsage(main) {
  main.append(h('h1', {}, 'Usage'));
  try {
    const u = await api('GET', '/api/usage');
    main.append(h('p', {}, `${u.month}: ${money(u.monthly_spend)} spent`, u.remaining != null ? `, ${money(u.remaining)} left of ${money(u.monthly_budget)}` : ''),
      h('h2', {}, 'By model'), table([['model', r => r[0]], ['cost', r => money(r[1])]], Object.entries(u.by_model || {})),
      h('h2', {}, 'By source'), table([['source', r => r[0]], ['cost', r => money(r[1])]], Object.entries(u.by_source || {})));
    const d = (await api('GET', '/api/usage/daily?days=30')).entries || [];
    const days = {}; for (const e of d) days[e.date] = (days[e.date] || 0) + e.cost;
    const ks = Object.keys(days).sort(), max = Math.max(1e-9, ...Object.values(days));
    const NS = 'http://www.w3.org/2000/svg', svg = document.createElementNS(NS, 'svg');
    svg.setAttribute('class', 'bars'); svg.setAttribute('viewBox', `0 0 ${Math.max(1, ks.length) * 20} 100`); svg.setAttribute('role', 'img'); svg.setAttribute('aria-label', 'Daily cost, last 30 days');
    ks.forEach((k, i) => { const r = document.createElementNS(NS, 'rect'); const v = days[k] / max * 95; r.setAttribute('x', i * 20 + 2); r.setAttribute('y', 100 - v); r.setAttribute('width', 16); r.setAttribute('height', v);
      const t = document.createElementNS(NS, 'title'); t.textContent = `${k}: ${money(days[k])}`; r.append(t); svg.append(r); });
    main.append(h('h2', {}, 'Daily'), svg);
  } catch (e) { main.append(h('p', { class: 'err' }, e.message)); }
  await section(main, 'Budgets', '/api/budgets', 'budgets', [['scope', r => r.scope], ['window', r => r.window], ['limit', r => money(r.limit_usd)], ['enabled', r => r.enabled ? 'yes' : 'no']]);
}

async function pageModels(main) {
  main.append(h('h1', {}, 'Models and providers'));
  await section(main, 'Models', '/api/models', 'models', [['id', r => r.id], ['provider', r => r.provider], ['price in/out per M', r => `${r.input_price_per_mtok ?? ''} / ${r.output_price_per_mtok ?? ''}`], ['enabled', r => r.enabled ? 'yes' : 'no']]);
  await section(main, 'Providers', '/api/providers', 'providers', [['id', r => r.id], ['kind', r => r.kind], ['base url', r => r.base_url], ['key', r => r.has_api_key ? r.api_key_hint || 'set' : 'none']]);
}

async function pageMCPs(main) {
  const reload = () => route();
  main.append(h('h1', {}, 'MCP servers'));
  await section(main, 'Servers', '/api/mcps', 'mcps', [['name', r => r.name], ['status', r => r.status], ['tools', r => (r.tools || []).length], ['last error', r => r.last_error]],
    me.admin ? r => act(r.enabled ? 'Disable' : 'Enable', () => api('POST', `/api/mcps/${encodeURIComponent(r.name)}/${r.enabled ? 'disable' : 'enable'}`), reload) : null);
  await section(main, 'Tools', '/api/mcp-tools', 'tools', [['server', r => r.mcp], ['tool', r => r.name], ['description', r => r.description]]);
}

async function pageTasks(main) {
  main.append(h('h1', {}, 'Scheduled tasks and workflows'));
  await section(main, 'Tasks', '/api/scheduled-tasks', 'tasks', [['name', r => r.name], ['schedule', r => r.cron_expression], ['next run', r => r.next_run_iso || fmtTime(r.next_run)], ['last', r => r.last_status]],
    me.admin ? r => act('Run now', () => api('POST', `/api/scheduled-tasks/${r.id}/run`), () => route()) : null);
  const runs = h('div', { 'aria-live': 'polite' });
  await section(main, 'Workflows', '/api/workflows', 'workflows', [['name', r => r.name], ['description', r => r.description], ['enabled', r => r.enabled ? 'yes' : 'no']],
    r => h('button', { onclick: async () => {
      runs.replaceChildren(h('h2', {}, 'Runs of ' + r.name));
      try {
        const d = await api('GET', `/api/workflows/${encodeURIComponent(r.id)}/runs`);
        runs.append(table([['started', x => fmtTime(x.started_at)], ['trigger', x => x.trigger], ['status', x => x.status], ['blocks', x => (x.trace || []).map(n => `${n.node_id}:${n.status}`).join(' ')], ['error', x => x.error]], d.runs || []));
      } catch (e) { runs.append(h('p', { class: 'err' }, e.message)); }
    } }, 'Runs'));
  main.append(runs);
}

async function pageBridges(main) {
  const reload = () => route();
  main.append(h('h1', {}, 'Bridges'));
  // A bridge waiting for a login shows its current QR code (WhatsApp).
  try {
    for (const b of (await api('GET', '/api/bridges')).bridges || []) {
      if (!b.login_qr) continue;
      const png = await api('POST', '/api/qr', { text: b.login_qr });
      main.append(h('section', { 'aria-label': `Log in ${b.name}` }, h('h2', {}, `Link ${b.name}`),
        h('p', {}, 'Scan this code with the phone (Linked devices → Link a device); it changes every 20 s.'),
        h('img', { src: URL.createObjectURL(png), alt: `Login QR code for ${b.name}` })));
      setTimeout(() => location.hash === '#/bridges' && route(), 15000);
    }
  } catch {}
  await section(main, 'Bridges', '/api/bridges', 'bridges', [['name', r => r.name], ['state', r => r.state], ['platform', r => r.platform_status], ['restarts', r => r.restarts],
    // A state the platform reported (needs_login, failed) is in both: say its reason once.
    ['last error', r => (r.last_error && (r.platform_status || '').includes(r.last_error)) ? '' : r.last_error]],
    r => [act('Restart', () => api('POST', `/api/bridges/${r.name}/restart`), reload), ' ',
      act(r.enabled ? 'Disable' : 'Enable', () => api('POST', `/api/bridges/${r.name}/${r.enabled ? 'disable' : 'enable'}`), reload)]);
}

async function pageDevices(main) {
  const reload = () => route();
  main.append(h('h1', {}, 'Devices'));
  const role = h('select', { 'aria-label': 'Role of the new device' }, h('option', { value: 'chat' }, 'chat'), h('option', { value: 'admin' }, 'admin'));
  const out = h('div', { 'aria-live': 'polite' });
  main.append(h('div', { class: 'row' }, role, h('button', { class: 'primary', onclick: async () => {
    try {
      const inv = await api('POST', '/api/invites', { role: role.value });
      const png = await api('POST', '/api/qr', { text: inv.ticket });
      out.replaceChildren(h('p', {}, 'Enroll with: ', h('code', {}, 'agentd enroll ' + inv.ticket)), h('img', { src: URL.createObjectURL(png), alt: 'QR code of the invitation ticket' }));
    } catch (e) { out.replaceChildren(h('p', { class: 'err' }, e.message)); }
  } }, 'Create invitation')), out);
  await section(main, 'Devices', '/api/devices', 'devices', [['handle', r => r.handle], ['id', r => (r.client_id || r.id || '').slice(0, 12)], ['role', r => (r.capabilities || []).join(', ')], ['status', r => r.status], ['last seen', r => fmtTime(r.last_seen)]],
    r => r.status === 'active' && r.handle !== 'owner' ? act('Revoke', () => confirm(`Revoke ${r.handle}?`) && api('POST', `/api/devices/${encodeURIComponent(r.client_id || r.id)}/revoke`), reload) : null);
}

async function pagePairing(main) {
  const reload = () => route();
  main.append(h('h1', {}, 'Pairing'), h('p', { class: 'mut' }, 'People who wrote to a bridge and wait for your approval, and the users you approved.'));
  let d;
  try { d = await api('GET', '/api/pairing'); } catch (e) { main.append(h('p', { class: 'err' }, e.message)); return; }
  const decide = (code, what) => act(what === 'approve' ? 'Approve' : 'Deny', () => api('POST', `/api/pairing/${encodeURIComponent(code)}/${what}`), reload);
  main.append(h('h2', {}, 'Requests'), table([['bridge', r => r.bridge], ['who', r => r.user_name], ['user id', r => r.user_id], ['code', r => r.code], ['state', r => r.state], ['expires', r => fmtTime(r.expires_at)]],
    d.requests || [], r => r.state === 'pending' ? [decide(r.code, 'approve'), ' ', decide(r.code, 'deny')] : null));
  main.append(h('h2', {}, 'Approved users'), table([['bridge', r => r.bridge], ['who', r => r.user_name], ['user id', r => r.user_id], ['since', r => fmtTime(r.approved_at)]],
    d.users || [], r => act('Revoke', () => confirm(`Revoke ${r.user_name || r.user_id}?`) && api('DELETE', `/api/pairing/users/${encodeURIComponent(r.bridge)}/${encodeURIComponent(r.user_id)}`), reload)));
}

// --- router -----------------------------------------------------------------
const pages = { chat: pageChat, vault: pageVault, usage: pageUsage, models: pageModels, mcps: pageMCPs, tasks: pageTasks, bridges: pageBridges, devices: pageDevices, pairing: pagePairing };
const adminPages = new Set(['bridges', 'devices', 'pairing']);
async function route() {
  const [path, query] = location.hash.replace(/^#\/?/, '').split('?');
  let name = path || 'chat';
  if (!pages[name] || (adminPages.has(name) && !me.admin)) name = 'chat';
  for (const a of document.querySelectorAll('nav a')) a.toggleAttribute('aria-current', a.dataset.page === name) && a.setAttribute('aria-current', 'page');
  const main = $('#main'); main.replaceChildren(); chat.el = null;
  document.title = `agentd — ${name}`;
  await pages[name](main, new URLSearchParams(query || ''));
  document.body.dataset.ready = name;
}

async function start() {
  try { me = await api('GET', '/api/me'); } catch (e) { $('#main').replaceChildren(h('p', { class: 'err' }, 'Not authorised: ' + e.message)); return; }
  for (const a of document.querySelectorAll('nav a[data-admin]')) a.hidden = !me.admin;
  try { const info = await api('GET', '/api/agent-info'); $('#agent').textContent = info.name || 'agentd'; } catch {}
  $('#menu').onclick = () => { const n = $('#nav'); n.classList.toggle('open'); $('#menu').setAttribute('aria-expanded', n.classList.contains('open')); };
  window.addEventListener('hashchange', route);
  ws.connect();
  await route();
}
start();
