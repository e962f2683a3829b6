// A small, safe Markdown renderer for model output and notes. Everything is
// HTML-escaped first; only tags this file writes itself reach the page, and
// links only with http(s) targets. Hand-written because a full CommonMark
// library plus a sanitizer would be most of the app's bytes.

const esc = s => s.replace(/[&<>"']/g, c => ({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;',"'":'&#39;'}[c]));

// inline renders one line's inline marks; opts.wikilink(target, alias) may
// return an href for [[target|alias]].
function inline(text, opts) {
  const codes = [];
  let s = text.replace(/`([^`]+)`/g, (_, c) => { codes.push(c); return `\u0000${codes.length - 1}\u0000`; });
  s = esc(s);
  s = s.replace(/\[\[([^\]|#]*)(#[^\]|]*)?(?:\|([^\]]*))?\]\]/g, (m, target, head, alias) => {
    const label = alias || target + (head || '');
    const href = opts.wikilink ? opts.wikilink(target, alias) : null;
    return href ? `<a href="${href}" class="wikilink">${label}</a>` : `<span class="wikilink">${label}</span>`;
  });
  s = s.replace(/\[([^\]]+)\]\((https?:\/\/[^\s)]+)\)/g, (m, label, url) =>
    `<a href="${url}" rel="noopener noreferrer" target="_blank">${label}</a>`);
  s = s.replace(/\*\*([^*]+)\*\*/g, '<strong>$1</strong>').replace(/(^|[^*])\*([^*\s][^*]*)\*/g, '$1<em>$2</em>');
  s = s.replace(/~~([^~]+)~~/g, '<del>$1</del>');
  return s.replace(/\u0000(\d+)\u0000/g, (_, i) => `<code>${esc(codes[+i])}</code>`);
}

// render turns Markdown into HTML: fenced code, headings, lists, quotes,
// paragraphs and inline marks.
export function render(text, opts = {}) {
  const out = [];
  const lines = String(text || '').replace(/\r\n/g, '\n').split('\n');
  let para = [], list = null;
  const flush = () => {
    if (para.length) { out.push(`<p>${para.map(l => inline(l, opts)).join('<br>')}</p>`); para = []; }
    if (list) { out.push(`<${list.tag}>${list.items.map(i => `<li>${inline(i, opts)}</li>`).join('')}</${list.tag}>`); list = null; }
  };
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i];
    const fence = l.match(/^\s*(```|~~~)\s*([\w+-]*)/);
    if (fence) {
      flush();
      const body = [];
      for (i++; i < lines.length && !lines[i].trim().startsWith(fence[1]); i++) body.push(lines[i]);
      out.push(`<pre><code${fence[2] ? ` class="lang-${esc(fence[2])}"` : ''}>${esc(body.join('\n'))}</code></pre>`);
      continue;
    }
    let m;
    if ((m = l.match(/^(#{1,6})\s+(.*)$/))) { flush(); const n = Math.min(m[1].length + 2, 6); out.push(`<h${n}>${inline(m[2], opts)}</h${n}>`); continue; }
    if ((m = l.match(/^\s*([-*+]|\d+[.)])\s+(.*)$/))) {
      const tag = /\d/.test(m[1]) ? 'ol' : 'ul';
      if (para.length) flush();
      if (!list || list.tag !== tag) { flush(); list = {tag, items: []}; }
      list.items.push(m[2]);
      continue;
    }
    if ((m = l.match(/^>\s?(.*)$/))) { flush(); out.push(`<blockquote>${inline(m[1], opts)}</blockquote>`); continue; }
    if (!l.trim()) { flush(); continue; }
    if (list) flush();
    para.push(l);
  }
  flush();
  return out.join('');
}
