// Apps: the registry of /v1/oauth/apps: register, edit declared scopes,
// delete; each action shows the curl it equals.

import { h, clear, say, field, select, curlBlock, shq } from '../dom.js';
import { request, enc } from '../api.js';

const SCOPES = ['storage.private.read', 'storage.private.write', 'storage.user.read', 'storage.user.write', 'storage.shared.read', 'storage.shared.write'];
const base = () => location.origin;

function scopeBoxes(legend, checked = [], prefix = 's') {
  const fs = h('fieldset', { class: 'scopes' }, h('legend', {}, legend));
  const boxes = SCOPES.map((s) => {
    const id = prefix + '-' + s.replace(/\./g, '-');
    const cb = h('input', { type: 'checkbox', id, value: s, checked: checked.includes(s) });
    fs.append(h('span', { class: 'check' }, cb, h('label', { for: id }, s)));
    return cb;
  });
  fs.values = () => boxes.filter((b) => b.checked).map((b) => b.value);
  return fs;
}

export async function appsView(root) {
  root.append(h('h1', {}, 'Apps'));
  const list = h('div', { class: 'apps' });
  const id = field('Client id', { name: 'client_id', required: true, maxlength: 128, placeholder: 'app-demo', spellcheck: 'false' });
  const name = field('Name', { name: 'name', maxlength: 256, placeholder: 'Demo' });
  const type = select('App type', [['service', 'service'], ['web', 'web'], ['native', 'native']]);
  const scopes = scopeBoxes('Declared scopes', ['storage.private.read', 'storage.private.write'], 'new');
  const curl = h('div');
  const form = h('form', { class: 'card', 'aria-labelledby': 'reg-title' },
    h('h2', { id: 'reg-title' }, 'Register an app'), h('div', { class: 'row' }, id, name, type), scopes,
    h('button', { type: 'submit' }, 'Register'), curl);
  const body = () => ({ client_id: id.input.value.trim(), name: name.input.value, declared_scopes: scopes.values(), app_type: type.input.value });
  const showCurl = () => clear(curl).append(curlBlock(`curl -X POST ${base()}/v1/oauth/apps -H "Authorization: Bearer $ADMIN_TOKEN" -d ${shq(JSON.stringify(body()))}`));
  form.addEventListener('input', showCurl);
  showCurl();
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await request('/v1/oauth/apps', { method: 'POST', body: body() });
      say('Registered ' + body().client_id + '.');
      id.input.value = '';
      await load();
    } catch (e) { say('Register failed: ' + e.message, true); }
  });
  root.append(form, h('h2', {}, 'Registered apps'), list);

  async function load() {
    const { items } = await request('/v1/oauth/apps');
    clear(list);
    if (!items.length) list.append(h('p', {}, 'No app is registered yet.'));
    for (const app of items) list.append(appCard(app));
  }

  function appCard(app) {
    const boxes = scopeBoxes('Declared scopes', app.declared_scopes, 'app-' + app.client_id.replace(/[^A-Za-z0-9_-]/g, '_'));
    const path = '/v1/oauth/apps/' + enc(app.client_id);
    const curl = h('div');
    const showCurl = () => clear(curl).append(curlBlock(
      `curl -X PATCH ${base()}${path} -H "Authorization: Bearer $ADMIN_TOKEN" -d ${shq(JSON.stringify({ declared_scopes: boxes.values() }))}\n` +
      `curl -X DELETE ${base()}${path} -H "Authorization: Bearer $ADMIN_TOKEN"`));
    boxes.addEventListener('change', showCurl);
    showCurl();
    const save = h('button', { type: 'button', onclick: async () => {
      try {
        await request(path, { method: 'PATCH', body: { declared_scopes: boxes.values() } });
        say('Saved the scopes of ' + app.client_id + '.');
      } catch (e) { say('Save failed: ' + e.message, true); }
    } }, 'Save scopes');
    const del = h('button', { type: 'button', class: 'danger', onclick: async () => {
      if (!confirm('Delete the app ' + app.client_id + '? Its tokens stop working; its data stays.')) return;
      try {
        await request(path, { method: 'DELETE' });
        say('Deleted ' + app.client_id + '.');
        await load();
      } catch (e) { say('Delete failed: ' + e.message, true); }
    } }, 'Delete');
    return h('section', { class: 'card app', 'aria-label': 'App ' + app.client_id },
      h('h3', {}, app.client_id, ' ', h('span', { class: 'muted' }, app.name ? '— ' + app.name : '')),
      h('p', { class: 'muted' }, 'Type ' + (app.app_type || '—') + ' · created ' + app.created_at + ' · updated ' + app.updated_at),
      boxes, h('div', { class: 'actions' }, save, del), curl);
  }
  await load();
}
