// One location of a tenant: its files, documents, kv keys and live
// changes, through the admin routes under
// /v1/admin/tenants/{tenant}/locations/{location}/.

import { h, clear, say, field, select, curlBlock, shq, fmtBytes, fmtTTL } from '../dom.js';
import { request, enc, encPath, qs, locBase } from '../api.js';
import { pager } from './tenants.js';

const TABS = [['files', 'Files'], ['db', 'Documents'], ['kv', 'KV'], ['live', 'Live changes']];

export async function locationView(root, tenant, loc, tab, coll) {
  const base = locBase(tenant, loc);
  const tabHref = (t) => '#/tenants/' + enc(tenant) + '/' + enc(loc) + '/' + t;
  root.append(
    h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/tenants' }, 'Tenants'), ' / ',
      h('a', { href: '#/tenants/' + enc(tenant) }, tenant), ' / ', h('span', {}, loc)),
    h('h1', {}, h('code', {}, loc), ' in ', h('code', {}, tenant)),
    h('nav', { class: 'tabs', 'aria-label': 'Primitives' }, TABS.map(([t, label]) =>
      h('a', { href: tabHref(t), 'aria-current': t === tab ? 'page' : null }, label))));
  const panel = h('section', { class: 'panel' });
  root.append(panel);
  if (tab === 'files') await filesTab(panel, base);
  else if (tab === 'db') await docsTab(panel, base, coll, tabHref('db'));
  else if (tab === 'kv') await kvTab(panel, base);
  else if (tab === 'live') await liveTab(panel, base);
}

// ---- files ----

async function filesTab(root, base) {
  const prefix = field('Prefix', { name: 'prefix', placeholder: 'photos/', spellcheck: 'false' });
  const search = h('form', { class: 'row inline', role: 'search' }, prefix, h('button', { type: 'submit' }, 'List'));
  const upPath = field('Path', { name: 'path', placeholder: 'docs/readme.txt', spellcheck: 'false', required: true });
  const upFile = field('File', { type: 'file', name: 'file', required: true });
  const upload = h('form', { class: 'card', 'aria-labelledby': 'up-title' }, h('h2', { id: 'up-title' }, 'Upload'), h('div', { class: 'row' }, upPath, upFile), h('button', { type: 'submit' }, 'Upload'));
  upFile.input.addEventListener('change', () => { if (!upPath.input.value && upFile.input.files[0]) upPath.input.value = upFile.input.files[0].name; });
  const tbody = h('tbody');
  const table = h('table', {}, h('caption', { class: 'sr-only' }, 'Files'),
    h('thead', {}, h('tr', {}, ['Path', 'Size', 'Modified', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))), tbody);
  const preview = h('section', { class: 'card', 'aria-live': 'polite', hidden: true });
  const pagerBox = h('div');
  root.append(search, h('div', { class: 'scroll' }, table), pagerBox, preview, upload);

  async function list() {
    clear(tbody);
    const p = pager(tbody, (cursor) => request(base + '/files' + qs({ prefix: prefix.input.value, limit: 100, cursor })), row, (f) => f.key, { empty: 'No file under this prefix.' });
    clear(pagerBox).append(p.note, p.more);
    await p.next();
  }
  function row(f) {
    const url = base + '/files/' + encPath(f.key);
    const tr = h('tr', {}, h('td', {}, h('code', {}, f.key)), h('td', {}, fmtBytes(f.size)), h('td', {}, f.lastModified),
      h('td', { class: 'actions' },
        h('button', { type: 'button', class: 'secondary', onclick: () => show(f, url) }, 'Preview'),
        h('button', { type: 'button', class: 'secondary', onclick: () => download(f, url) }, 'Download'),
        h('button', { type: 'button', class: 'danger', onclick: async () => {
          if (!confirm('Delete ' + f.key + '?')) return;
          try { await request(url, { method: 'DELETE' }); tr.remove(); say('Deleted ' + f.key + '.'); } catch (e) { say('Delete failed: ' + e.message, true); }
        } }, 'Delete')));
    return tr;
  }
  async function show(f, url) {
    preview.hidden = false;
    clear(preview).append(h('h2', {}, 'Preview of ', h('code', {}, f.key)));
    try {
      // Text and images only, at most 1 MiB: anything else is a download.
      const res = await request(url, { raw: true, headers: { Range: 'bytes=0-1048575' } });
      const ct = (res.headers.get('Content-Type') || '').toLowerCase();
      const blob = await res.blob();
      if (/^image\/(png|jpeg|gif|webp|avif|bmp)/.test(ct)) {
        const img = h('img', { alt: 'Preview of ' + f.key, class: 'preview' });
        img.src = URL.createObjectURL(blob);
        img.addEventListener('load', () => URL.revokeObjectURL(img.src), { once: true });
        preview.append(img);
      } else if (/^text\/|json|xml|javascript|csv|yaml/.test(ct) || ct === '') {
        preview.append(h('pre', { class: 'text' }, await blob.text()));
      } else {
        preview.append(h('p', {}, 'No preview for ' + ct + ': download it.'));
      }
    } catch (e) {
      preview.append(e.status === 416 ? h('p', {}, 'The file is empty.') : h('p', { class: 'error' }, 'Preview failed: ' + e.message));
    }
    preview.append(curlBlock(`curl ${location.origin}${url} -H "Authorization: Bearer $ADMIN_TOKEN" -o ${shq(f.key.split('/').pop())}`));
  }
  async function download(f, url) {
    try {
      const res = await request(url, { raw: true });
      const a = h('a', { download: f.key.split('/').pop() });
      a.href = URL.createObjectURL(await res.blob());
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 10000);
    } catch (e) { say('Download failed: ' + e.message, true); }
  }
  search.addEventListener('submit', (ev) => { ev.preventDefault(); list().catch((e) => say(e.message, true)); });
  upload.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const file = upFile.input.files[0];
    if (!file) return;
    try {
      await request(base + '/files/' + encPath(upPath.input.value.trim()), { method: 'PUT', body: file, headers: { 'Content-Type': file.type || 'application/octet-stream' } });
      say('Uploaded ' + upPath.input.value + '.');
      upload.reset();
      await list();
    } catch (e) { say('Upload failed: ' + e.message, true); }
  });
  await list();
}

// ---- documents ----

const OPS = [['eq', '='], ['ne', '≠'], ['gt', '>'], ['gte', '≥'], ['lt', '<'], ['lte', '≤'], ['in', 'in (JSON array)']];

// parseScalar reads a filter value: JSON when it parses (42, true, null,
// "text"), else the text itself.
function parseScalar(s) {
  try { return JSON.parse(s); } catch { return s; }
}

async function docsTab(root, base, coll, dbHref) {
  const colls = h('ul', { class: 'list chips', 'aria-label': 'Collections' });
  const p = pager(colls, (cursor) => request(base + '/collections' + qs({ limit: 100, cursor })),
    (c) => h('li', {}, h('a', { href: dbHref + '/' + enc(c.name), 'aria-current': c.name === coll ? 'page' : null }, c.name)), (c) => c.name, { empty: 'No collection holds documents here.' });
  const open = field('Collection', { name: 'collection', value: coll || '', placeholder: 'notes', spellcheck: 'false', pattern: '[A-Za-z0-9][A-Za-z0-9_.\\-]{0,63}' });
  const go = h('form', { class: 'row inline' }, open, h('button', { type: 'submit' }, 'Open'));
  go.addEventListener('submit', (ev) => { ev.preventDefault(); if (open.input.value) location.hash = dbHref + '/' + enc(open.input.value.trim()); });
  root.append(h('h2', {}, 'Collections'), colls, p.note, p.more, go);
  if (!coll) { await p.next(); return; }
  p.next().catch((e) => say(e.message, true)); // beside the documents, not before them
  await collectionView(root, base + '/db/' + enc(coll), coll);
}

async function collectionView(root, cbase, coll) {
  // Query builder: filter rows and sort rows of the contract.
  const filters = h('div', { class: 'rows' });
  const sorts = h('div', { class: 'rows' });
  const limit = field('Page size', { type: 'number', min: 1, max: 1000, value: 50, name: 'limit' });
  let n = 0;
  const addFilter = () => {
    const i = ++n;
    const f = field('Field', { name: 'ffield' + i, placeholder: 'status', spellcheck: 'false' });
    const op = select('Operator', OPS, { name: 'fop' + i });
    const v = field('Value', { name: 'fvalue' + i, placeholder: '"open" or 42', spellcheck: 'false' });
    const row = h('div', { class: 'row inline filter' }, f, op, v, h('button', { type: 'button', class: 'secondary', 'aria-label': 'Remove this filter', onclick: () => { row.remove(); showCurl(); } }, '×'));
    row.read = () => {
      if (!f.input.value.trim()) return null;
      const val = parseScalar(v.input.value);
      const o = op.input.value;
      return [f.input.value.trim(), o === 'eq' ? val : { [o]: val }];
    };
    filters.append(row);
    f.input.focus();
  };
  const addSort = () => {
    const i = ++n;
    const f = field('Sort by', { name: 'sfield' + i, placeholder: 'createdAt', spellcheck: 'false' });
    const d = select('Order', [['1', 'ascending'], ['-1', 'descending']], { name: 'sdir' + i });
    const row = h('div', { class: 'row inline' }, f, d, h('button', { type: 'button', class: 'secondary', 'aria-label': 'Remove this sort', onclick: () => { row.remove(); showCurl(); } }, '×'));
    row.read = () => f.input.value.trim() ? [f.input.value.trim(), Number(d.input.value)] : null;
    sorts.append(row);
    f.input.focus();
  };
  const queryBody = () => {
    const filter = {}, sort = {};
    for (const r of filters.children) { const kv = r.read(); if (kv) filter[kv[0]] = kv[1]; }
    for (const r of sorts.children) { const kv = r.read(); if (kv) sort[kv[0]] = kv[1]; }
    return { filter, sort, limit: Number(limit.input.value) || 50 };
  };
  const curl = h('div');
  const showCurl = () => clear(curl).append(curlBlock(`curl -X POST ${location.origin}${cbase}/query -H "Authorization: Bearer $ADMIN_TOKEN" -d ${shq(JSON.stringify(queryBody()))}`));
  const qform = h('form', { class: 'card', 'aria-labelledby': 'q-title' },
    h('h2', { id: 'q-title' }, 'Query ', h('code', {}, coll)), filters, sorts,
    h('div', { class: 'row inline' }, limit,
      h('button', { type: 'button', class: 'secondary', onclick: addFilter }, 'Add filter'),
      h('button', { type: 'button', class: 'secondary', onclick: addSort }, 'Add sort'),
      h('button', { type: 'submit' }, 'Run query')), curl);
  qform.addEventListener('input', showCurl);
  showCurl();
  const tbody = h('tbody');
  const table = h('table', {}, h('caption', { class: 'sr-only' }, 'Documents of ' + coll),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Key'), h('th', { scope: 'col' }, 'Value'))), tbody);
  const more = h('button', { type: 'button', class: 'secondary', hidden: true }, 'Next page');
  const editor = h('section', { class: 'card', 'aria-labelledby': 'ed-title' });
  root.append(qform, h('div', { class: 'scroll' }, table), more, editor);

  let cursor = null;
  async function run(next) {
    const body = next ? { cursor } : queryBody();
    const page = await request(cbase + '/query', { method: 'POST', body });
    if (!next) clear(tbody);
    for (const d of page.items) {
      const text = JSON.stringify(d.value);
      tbody.append(h('tr', {}, h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => edit(d.key) }, d.key)),
        h('td', {}, h('code', { class: 'clip' }, text.length > 200 ? text.slice(0, 200) + '…' : text))));
    }
    if (!page.items.length && !next) tbody.append(h('tr', {}, h('td', { colspan: 2 }, 'No document matches.')));
    cursor = page.nextCursor;
    more.hidden = !cursor;
  }
  more.addEventListener('click', () => run(true).catch((e) => say('Query failed: ' + e.message, true)));
  qform.addEventListener('submit', (ev) => { ev.preventDefault(); run(false).catch((e) => say('Query failed: ' + e.message, true)); });

  // The editor: view, edit with If-Match, create with If-None-Match: *, delete.
  const key = field('Key', { name: 'dockey', spellcheck: 'false', required: true });
  const value = field('Value (JSON)', { name: 'docvalue', rows: 12, spellcheck: 'false', class: 'mono' }, 'textarea');
  const etagLine = h('p', { class: 'muted' });
  const edCurl = h('div');
  let etag = null;
  const showEdCurl = () => {
    const u = `${location.origin}${cbase}/${enc(key.input.value)}`;
    const cond = etag ? ` -H ${shq('If-Match: ' + etag)}` : ` -H 'If-None-Match: *'`;
    clear(edCurl).append(curlBlock(`curl -X PUT ${u} -H "Authorization: Bearer $ADMIN_TOKEN"${cond} -d ${shq(value.input.value)}\ncurl -X DELETE ${u} -H "Authorization: Bearer $ADMIN_TOKEN"${etag ? ' -H ' + shq('If-Match: ' + etag) : ''}`));
  };
  const edForm = h('form', {}, h('h2', { id: 'ed-title' }, 'Document'), key, value, etagLine,
    h('div', { class: 'actions' },
      h('button', { type: 'submit' }, 'Save'),
      h('button', { type: 'button', class: 'secondary', onclick: () => { etag = null; key.input.value = ''; value.input.value = '{}'; etagLine.textContent = 'New document: saved only if the key is free (If-None-Match: *).'; showEdCurl(); key.input.focus(); } }, 'New document'),
      h('button', { type: 'button', class: 'danger', onclick: remove }, 'Delete')), edCurl);
  edForm.addEventListener('input', showEdCurl);
  editor.append(edForm);
  value.input.value = '{}';
  etagLine.textContent = 'Pick a document, or write a new one.';
  showEdCurl();

  async function edit(k) {
    try {
      const res = await request(cbase + '/' + enc(k), { raw: true });
      etag = res.headers.get('ETag');
      const d = await res.json();
      key.input.value = d.key;
      value.input.value = JSON.stringify(d.value, null, 2);
      etagLine.textContent = 'ETag ' + etag + ': saved only if nobody wrote it meanwhile (If-Match).';
      showEdCurl();
      value.input.focus();
    } catch (e) { say('Read failed: ' + e.message, true); }
  }
  edForm.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    let v;
    try { v = JSON.parse(value.input.value); } catch (e) { say('The value is not JSON: ' + e.message, true); value.input.focus(); return; }
    const headers = etag ? { 'If-Match': etag } : { 'If-None-Match': '*' };
    try {
      const res = await request(cbase + '/' + enc(key.input.value), { method: 'PUT', body: v, headers, raw: true });
      etag = res.headers.get('ETag');
      etagLine.textContent = 'Saved; ETag ' + etag + '.';
      say('Saved ' + key.input.value + '.');
      showEdCurl();
      await run(false);
    } catch (e) {
      say(e.status === 412 ? 'Not saved: the document changed (or exists) meanwhile; read it again.' : 'Save failed: ' + e.message, true);
    }
  });
  async function remove() {
    if (!key.input.value || !confirm('Delete the document ' + key.input.value + '?')) return;
    try {
      await request(cbase + '/' + enc(key.input.value), { method: 'DELETE', headers: etag ? { 'If-Match': etag } : {} });
      say('Deleted ' + key.input.value + '.');
      etag = null;
      value.input.value = '{}';
      await run(false);
    } catch (e) { say(e.status === 412 ? 'Not deleted: the document changed meanwhile.' : 'Delete failed: ' + e.message, true); }
  }
  await run(false);
}

// ---- kv ----

async function kvTab(root, base) {
  const prefix = field('Prefix', { name: 'kvprefix', placeholder: 'session:', spellcheck: 'false' });
  const search = h('form', { class: 'row inline', role: 'search' }, prefix, h('button', { type: 'submit' }, 'List'));
  const tbody = h('tbody');
  const table = h('table', {}, h('caption', { class: 'sr-only' }, 'KV keys'),
    h('thead', {}, h('tr', {}, ['Key', 'TTL', 'Actions'].map((c) => h('th', { scope: 'col' }, c)))), tbody);
  const pagerBox = h('div');
  const key = field('Key', { name: 'kvkey', spellcheck: 'false', required: true });
  const value = field('Value', { name: 'kvvalue', rows: 4, spellcheck: 'false', class: 'mono' }, 'textarea');
  const ttl = field('TTL in seconds (empty: none)', { type: 'number', min: 1, name: 'kvttl' });
  const cur = h('p', { class: 'muted' });
  const curl = h('div');
  const body = () => ttl.input.value ? { value: value.input.value, ttl: Number(ttl.input.value) } : { value: value.input.value };
  const showCurl = () => clear(curl).append(curlBlock(`curl -X PUT ${location.origin}${base}/kv/${encPath(key.input.value)} -H "Authorization: Bearer $ADMIN_TOKEN" -d ${shq(JSON.stringify(body()))}`));
  const form = h('form', { class: 'card', 'aria-labelledby': 'kv-title' }, h('h2', { id: 'kv-title' }, 'Set a key'), key, value, ttl, cur,
    h('div', { class: 'actions' }, h('button', { type: 'submit' }, 'Set'), h('button', { type: 'button', class: 'danger', onclick: () => del(key.input.value) }, 'Delete')), curl);
  form.addEventListener('input', showCurl);
  showCurl();
  root.append(search, h('div', { class: 'scroll' }, table), pagerBox, form);

  async function list() {
    clear(tbody);
    const p = pager(tbody, (cursor) => request(base + '/kv' + qs({ prefix: prefix.input.value, limit: 100, cursor })), row, (k) => k.key, { empty: 'No key under this prefix.' });
    clear(pagerBox).append(p.note, p.more);
    await p.next();
  }
  function row(k) {
    return h('tr', {}, h('td', {}, h('button', { type: 'button', class: 'link', onclick: () => view(k.key) }, k.key)), h('td', {}, fmtTTL(k.ttl)),
      h('td', { class: 'actions' }, h('button', { type: 'button', class: 'danger', onclick: () => del(k.key) }, 'Delete')));
  }
  async function view(k) {
    try {
      const v = await request(base + '/kv/' + encPath(k));
      key.input.value = k;
      value.input.value = v.value;
      ttl.input.value = v.ttl > 0 ? v.ttl : '';
      cur.textContent = 'TTL: ' + fmtTTL(v.ttl) + '. Set writes the value and the TTL above.';
      showCurl();
      value.input.focus();
    } catch (e) { say('Read failed: ' + e.message, true); }
  }
  async function del(k) {
    if (!k || !confirm('Delete the key ' + k + '?')) return;
    try { await request(base + '/kv/' + encPath(k), { method: 'DELETE' }); say('Deleted ' + k + '.'); await list(); } catch (e) { say('Delete failed: ' + e.message, true); }
  }
  search.addEventListener('submit', (ev) => { ev.preventDefault(); list().catch((e) => say(e.message, true)); });
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try { await request(base + '/kv/' + encPath(key.input.value), { method: 'PUT', body: body() }); say('Set ' + key.input.value + '.'); await list(); } catch (e) { say('Set failed: ' + e.message, true); }
  });
  await list();
}

// ---- live changes ----

async function liveTab(root, base) {
  const kind = select('Feed', [['db', 'Documents of a collection'], ['kv', 'KV keys'], ['files', 'Files']], { name: 'feed' });
  const name = field('Collection, or key prefix', { name: 'feedname', placeholder: 'notes', spellcheck: 'false' });
  const start = h('button', { type: 'submit' }, 'Follow');
  const stop = h('button', { type: 'button', class: 'secondary', disabled: true }, 'Stop');
  const log = h('ol', { class: 'events', 'aria-live': 'polite', 'aria-label': 'Events' });
  const form = h('form', { class: 'row inline' }, kind, name, start, stop);
  root.append(h('p', { class: 'muted' }, 'Follows a change feed (Server-Sent Events, read with fetch so that the token stays in a header). The newest event comes first; at most 200 are kept.'), form, log);
  let ctl = null;
  stop.addEventListener('click', () => ctl && ctl.abort());
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    if (ctl) ctl.abort();
    const k = kind.input.value, v = name.input.value.trim();
    let url;
    if (k === 'db') {
      if (!v) { say('Name a collection to follow.', true); return; }
      url = base + '/db/' + enc(v) + '/changes';
    } else url = base + '/' + k + '/changes' + qs({ prefix: v });
    ctl = new AbortController();
    start.disabled = true; stop.disabled = false;
    clear(log);
    try {
      const res = await request(url, { raw: true, signal: ctl.signal, headers: { Accept: 'text/event-stream' } });
      await readSSE(res.body, (ev) => {
        if (ev.event === undefined && ev.data === undefined) return;
        log.prepend(h('li', {}, h('span', { class: 'tag' }, ev.event || 'message'), ' ', h('code', {}, ev.data || '')));
        while (log.children.length > 200) log.lastChild.remove();
      });
      say('The feed ended.');
    } catch (e) {
      if (e.name !== 'AbortError') say('The feed failed: ' + e.message, true);
    } finally {
      start.disabled = false; stop.disabled = true; ctl = null;
    }
  });
  root.addEventListener('cpod:leave', () => ctl && ctl.abort());
  window.addEventListener('hashchange', () => ctl && ctl.abort(), { once: true });
}

// readSSE parses a text/event-stream body, calling each for every event.
async function readSSE(stream, each) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '', ev = {};
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += value;
    let i;
    while ((i = buf.search(/\r?\n/)) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(buf[i] === '\r' ? i + 2 : i + 1);
      if (line === '') { each(ev); ev = {}; continue; }
      if (line.startsWith(':')) continue;
      const c = line.indexOf(':');
      const f = c < 0 ? line : line.slice(0, c);
      const val = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
      if (f === 'data') ev.data = ev.data === undefined ? val : ev.data + '\n' + val;
      else if (f === 'event' || f === 'id') ev[f] = val;
    }
  }
}
