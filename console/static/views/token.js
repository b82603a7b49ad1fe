// Mint a development token (embedded default only: the server signs it
// with its data directory's secret, as `httpserver token` does).

import { h, clear, say, field, curlBlock, shq } from '../dom.js';
import { request } from '../api.js';

export async function tokenView(root, info) {
  const tenant = field('Tenant', { name: 'tenant', required: true, value: 't1', spellcheck: 'false' });
  const app = field('App (client_id of a registered app)', { name: 'app', required: true, spellcheck: 'false' });
  const user = field('User (empty: no user)', { name: 'user', spellcheck: 'false' });
  const ttl = field('Lifetime in seconds', { type: 'number', name: 'ttl', min: 1, max: 2592000, value: 3600 });
  const fs = h('fieldset', { class: 'scopes' }, h('legend', {}, 'Scopes'));
  const boxes = info.scopes.map((s) => {
    const id = 'tok-' + s.replace(/\./g, '-');
    const cb = h('input', { type: 'checkbox', id, value: s, checked: true });
    fs.append(h('span', { class: 'check' }, cb, h('label', { for: id }, s)));
    return cb;
  });
  const out = h('div', { 'aria-live': 'polite' });
  const form = h('form', { class: 'card', 'aria-labelledby': 'tok-title' },
    h('h1', { id: 'tok-title' }, 'Mint a development token'),
    h('p', { class: 'muted' }, 'Signed with this server\'s local token secret: only servers without a -jwt-* setting (the embedded default) accept it.'),
    h('div', { class: 'row' }, tenant, app, user, ttl), fs, h('button', { type: 'submit' }, 'Mint token'), out);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const body = { tenant: tenant.input.value.trim(), app: app.input.value.trim(), scopes: boxes.filter((b) => b.checked).map((b) => b.value), ttl: Number(ttl.input.value) };
    if (user.input.value.trim()) body.user = user.input.value.trim();
    try {
      const r = await request('/console/api/token', { method: 'POST', body });
      const area = h('textarea', { readonly: true, rows: 4, class: 'mono', 'aria-label': 'The token', id: 'minted-token' });
      area.value = r.token;
      const copy = h('button', { type: 'button', class: 'secondary', onclick: async () => {
        try { await navigator.clipboard.writeText(r.token); say('Copied.'); } catch { area.select(); say('Select and copy the token.'); }
      } }, 'Copy');
      const cli = ['go run ./httpserver token --tenant', shq(body.tenant), '--app', shq(body.app)];
      if (body.user) cli.push('--user', shq(body.user));
      cli.push('--scope', body.scopes.join(','), '--ttl', body.ttl + 's');
      clear(out).append(h('p', {}, 'Expires at ' + r.expiresAt + '.'), area, copy,
        curlBlock(`export TOKEN="$(${cli.join(' ')})"\ncurl ${location.origin}/v1/storage/kv/hello -H "Authorization: Bearer $TOKEN"`));
      area.focus();
      area.select();
    } catch (e) { say('Minting failed: ' + e.message, true); }
  });
  root.append(form);
}
