// The console's one way to the server: fetch on the same origin with the
// admin token from sessionStorage in the Authorization header (never in
// a URL). Errors come back as ApiError with the contract's code.

const KEY = 'cpod.console.adminToken';

export const token = {
  get: () => sessionStorage.getItem(KEY) || '',
  set: (t) => sessionStorage.setItem(KEY, t),
  clear: () => sessionStorage.removeItem(KEY),
};

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || ('HTTP ' + status));
    this.status = status;
    this.code = code || '';
  }
}

// enc encodes one path segment; encPath each segment of a path.
export const enc = (s) => encodeURIComponent(s);
export const encPath = (p) => p.split('/').map(enc).join('/');

// request sends one call. opts: {method, body (object as JSON, or
// Blob/string as is), headers, raw (return the Response), signal}.
export async function request(path, opts = {}) {
  const headers = new Headers(opts.headers || {});
  headers.set('Authorization', 'Bearer ' + token.get());
  let body = opts.body;
  if (body !== undefined && !(body instanceof Blob) && typeof body !== 'string') {
    body = JSON.stringify(body);
    headers.set('Content-Type', 'application/json');
  }
  const res = await fetch(path, { method: opts.method || 'GET', headers, body, signal: opts.signal, cache: 'no-store', credentials: 'omit' });
  if (!res.ok && res.status !== 304) {
    let code = '', message = '';
    try { const j = await res.json(); code = j.error; message = j.message; } catch { /* not JSON */ }
    // Every call of the console is an admin call: a 401 means the token
    // is no longer one (the server restarted with others).
    if (res.status === 401) window.dispatchEvent(new CustomEvent('cpod:signed-out'));
    throw new ApiError(res.status, code, message);
  }
  if (opts.raw) return res;
  if (res.status === 204) return null;
  const ct = res.headers.get('Content-Type') || '';
  return ct.includes('application/json') ? res.json() : res.text();
}

// locBase is the admin base path of a tenant's location.
export const locBase = (tenant, loc) => '/v1/admin/tenants/' + enc(tenant) + '/locations/' + enc(loc);

// query builds a query string of the defined, non-empty values.
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') u.set(k, v);
  const s = u.toString();
  return s ? '?' + s : '';
}
