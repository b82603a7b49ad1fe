// The console's shell: sign-in, navigation and the hash router. Views
// live in views/*.js; each is a function (main, params) that renders
// into main and returns when its first content is on screen.

import { h, clear, say, field } from './dom.js';
import { request, token, ApiError } from './api.js';
import { appsView } from './views/apps.js';
import { tenantsView, tenantView } from './views/tenants.js';
import { locationView } from './views/location.js';
import { tokenView } from './views/token.js';

const main = document.getElementById('main');
const nav = document.getElementById('nav');
const signout = document.getElementById('signout');
export const info = { devTokens: false, scopes: [] };

function signInView() {
  nav.hidden = true;
  signout.hidden = true;
  const tok = field('Admin token', { type: 'password', name: 'token', autocomplete: 'current-password', required: true, spellcheck: 'false' });
  const err = h('p', { class: 'error', role: 'alert' });
  const form = h('form', { class: 'card signin', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title' }, 'Sign in'),
    h('p', {}, 'Paste an admin token of this server (CPOD_ADMIN_TOKENS, or the file admin-token of the data directory). It is kept in this tab only (sessionStorage) and sent in the Authorization header.'),
    tok, err, h('button', { type: 'submit' }, 'Sign in'));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    token.set(tok.input.value.trim());
    try {
      await loadInfo();
      // A new hash routes through hashchange; the same hash routes here.
      if (!location.hash || location.hash === '#/') location.hash = '#/tenants';
      else route();
    } catch (e) {
      token.clear();
      err.textContent = e instanceof ApiError && e.status === 401 ? 'That is not an admin token of this server.' : 'Sign-in failed: ' + e.message;
      tok.input.focus();
    }
  });
  clear(main).append(form);
  tok.input.focus();
}

async function loadInfo() {
  const i = await request('/console/api/info');
  info.devTokens = !!i.devTokens;
  info.scopes = i.scopes || [];
  document.getElementById('nav-token').hidden = !info.devTokens;
}

// route renders the view the hash names:
//   #/apps  #/tenants  #/tenants/{t}  #/tenants/{t}/{location}/{tab}[/{collection}]  #/token
let routing = 0;
async function route() {
  if (!token.get()) return signInView();
  nav.hidden = false;
  signout.hidden = false;
  const parts = location.hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  const section = parts[0] || 'tenants';
  for (const a of nav.querySelectorAll('a')) {
    if (a.dataset.section === section) a.setAttribute('aria-current', 'page'); else a.removeAttribute('aria-current');
  }
  const n = ++routing;
  const container = h('div', { class: 'view' });
  clear(main).append(container);
  try {
    if (section === 'apps') await appsView(container);
    else if (section === 'token' && info.devTokens) await tokenView(container, info);
    else if (section === 'tenants' && parts.length === 1) await tenantsView(container);
    else if (section === 'tenants' && parts.length === 2) await tenantView(container, parts[1]);
    else if (section === 'tenants') await locationView(container, parts[1], parts[2], parts[3] || 'files', parts[4]);
    else container.append(h('p', {}, 'No such page.'));
  } catch (e) {
    if (n === routing) container.append(h('p', { class: 'error', role: 'alert' }, 'Could not load this view: ' + e.message));
  }
  if (n === routing) {
    performance.mark('cpod:view-ready');
    document.body.dataset.ready = String(n);
  }
}

signout.addEventListener('click', () => {
  token.clear();
  location.hash = '#/';
  say('Signed out.');
  signInView();
});
window.addEventListener('cpod:signed-out', () => {
  token.clear();
  say('The server refused the admin token: sign in again.', true);
  signInView();
});
window.addEventListener('hashchange', () => route().then(() => main.focus({ preventScroll: true })));

(async () => {
  if (token.get()) {
    try { await loadInfo(); } catch { token.clear(); }
  }
  route();
})();
