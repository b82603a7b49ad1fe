// Tenants (found from the data) and one tenant: usage, quota and its
// locations (shared, apps' private tiers, users' user tiers).

import { h, clear, say, field, curlBlock, shq, fmtBytes } from '../dom.js';
import { request, enc, qs, ApiError } from '../api.js';

// pager lists an admin listing page by page ("Load more"), merging names
// that come again (a name held by two stores comes once per store).
export function pager(list, fetchPage, render, keyOf, { empty = 'Nothing here.', label = 'Load more' } = {}) {
  let cursor = null, done = false, shown = 0;
  const seen = new Set();
  const more = h('button', { type: 'button', class: 'secondary', hidden: true }, label);
  const note = h('p', { class: 'muted' });
  async function next() {
    more.disabled = true;
    try {
      // A page may be empty while more follow (bounded work per request):
      // fetch on until something shows or the listing ends, at most 20 pages.
      for (let i = 0; i < 20; i++) {
        const page = await fetchPage(cursor);
        for (const it of page.items) {
          const k = keyOf(it);
          if (seen.has(k)) continue;
          seen.add(k);
          list.append(render(it));
          shown++;
        }
        cursor = page.nextCursor;
        done = cursor === null;
        if (done || page.items.length) break;
      }
    } finally {
      more.disabled = false;
    }
    more.hidden = done;
    note.textContent = shown === 0 && done ? empty : '';
  }
  more.addEventListener('click', () => next().catch((e) => say('Loading failed: ' + e.message, true)));
  return { next, more, note };
}

export async function tenantsView(root) {
  root.append(h('h1', {}, 'Tenants'),
    h('p', { class: 'muted' }, 'Every tenant that holds a file, a document or a kv key.'));
  const filter = field('Open a tenant by id', { name: 'tenant', placeholder: 't1', spellcheck: 'false' });
  const go = h('form', { class: 'row inline' }, filter, h('button', { type: 'submit' }, 'Open'));
  go.addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (filter.input.value.trim()) location.hash = '#/tenants/' + enc(filter.input.value.trim());
  });
  const list = h('ul', { class: 'list', 'aria-label': 'Tenants' });
  const p = pager(list, (cursor) => request('/v1/admin/tenants' + qs({ limit: 100, cursor })),
    (t) => h('li', {}, h('a', { href: '#/tenants/' + enc(t.id) }, t.id)), (t) => t.id, { empty: 'No tenant holds data yet.' });
  root.append(go, list, p.note, p.more);
  await p.next();
}

const PRIMS = ['files', 'documents', 'kv'];

export async function tenantView(root, tenant) {
  root.append(h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('a', { href: '#/tenants' }, 'Tenants'), ' / ', h('span', {}, tenant)),
    h('h1', {}, 'Tenant ', h('code', {}, tenant)));
  const usageBox = h('section', { class: 'card', 'aria-labelledby': 'usage-title' }, h('h2', { id: 'usage-title' }, 'Usage and quota'));
  const locs = h('ul', { class: 'list', 'aria-label': 'Locations' });
  const p = pager(locs, (cursor) => request('/v1/admin/tenants/' + enc(tenant) + '/locations' + qs({ limit: 100, cursor })),
    (l) => h('li', {}, h('a', { href: '#/tenants/' + enc(tenant) + '/' + enc(l.location) + '/files' }, describe(l))), (l) => l.location);
  root.append(h('section', { 'aria-labelledby': 'loc-title' }, h('h2', { id: 'loc-title' }, 'Locations'), locs, p.note, p.more), usageBox);
  await p.next();
  usage(usageBox, tenant); // after the first content: it may be slow or missing
}

function describe(l) {
  if (l.tier === 'shared') return 'Shared tier (every app of the tenant)';
  if (l.tier === 'private') return 'App ' + l.app + ' — private tier';
  return 'User ' + l.user + ' — user tier';
}

async function usage(box, tenant) {
  const path = '/v1/admin/tenants/' + enc(tenant);
  let u;
  try {
    u = await request(path + '/usage');
  } catch (e) {
    box.append(h('p', { class: 'muted' }, e instanceof ApiError && e.status === 404 && e.code === 'unknown_endpoint'
      ? 'Usage and quotas are not available on this server.' : 'Usage could not be read: ' + e.message));
    return;
  }
  const quota = u.quota || {};
  const table = h('table', {}, h('caption', { class: 'sr-only' }, 'Usage and quota per primitive'),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Primitive'), h('th', { scope: 'col' }, 'Bytes'), h('th', { scope: 'col' }, 'Count'),
      h('th', { scope: 'col' }, 'Quota bytes'), h('th', { scope: 'col' }, 'Quota count'))));
  const tb = h('tbody');
  const inputs = {};
  for (const k of PRIMS) {
    const used = u[k] || {}, q = quota[k] || {};
    // 0 is unlimited; an empty field sends null, which removes the
    // tenant's own limit (the server's default applies again).
    const qb = h('input', { type: 'number', min: 0, placeholder: 'unlimited', 'aria-label': k + ' quota bytes (empty: unlimited)', value: q.bytes || '' });
    const qc = h('input', { type: 'number', min: 0, placeholder: 'unlimited', 'aria-label': k + ' quota count (empty: unlimited)', value: q.count || '' });
    inputs[k] = [qb, qc];
    tb.append(h('tr', {}, h('th', { scope: 'row' }, k), h('td', {}, fmtBytes(used.bytes || 0)), h('td', {}, String(used.count ?? 0)), h('td', {}, qb), h('td', {}, qc)));
  }
  table.append(tb);
  const body = () => {
    const b = {};
    for (const k of PRIMS) {
      const [qb, qc] = inputs[k];
      b[k] = { bytes: qb.value === '' ? null : Number(qb.value), count: qc.value === '' ? null : Number(qc.value) };
    }
    return b;
  };
  const curl = h('div');
  const showCurl = () => clear(curl).append(curlBlock(`curl -X PUT ${location.origin}${path}/quota -H "Authorization: Bearer $ADMIN_TOKEN" -d ${shq(JSON.stringify(body()))}`));
  const form = h('form', {}, h('div', { class: 'scroll' }, table), h('button', { type: 'submit' }, 'Save quota'), curl);
  form.addEventListener('input', showCurl);
  showCurl();
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await request(path + '/quota', { method: 'PUT', body: body() });
      say('Saved the quota of ' + tenant + '.');
    } catch (e) { say('Saving the quota failed: ' + e.message, true); }
  });
  box.append(form);
}
