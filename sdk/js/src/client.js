// @ts-check
import { CpodError, errorFromResponse, localError } from './errors.js';
import { Files } from './files.js';
import { Db } from './db.js';
import { Kv } from './kv.js';
import { usage } from './usage.js';

/** @typedef {import('../index.js').CpodClientOptions} CpodClientOptions */
/** @typedef {import('../index.js').Tier} Tier */

/**
 * @typedef {object} RequestInit2
 * @property {Record<string, string | number | undefined | null>} [query]
 * @property {Record<string, string>} [headers]
 * @property {any} [json] a value sent as the JSON body
 * @property {BodyInit | null} [body] a raw body
 * @property {AbortSignal} [signal]
 */

/**
 * Transport sends the API calls of one client. It is internal: the storage
 * objects hold it, and CpodClient keeps it in a private field.
 */
export class Transport {
  /**
   * @param {string} base scheme://host[/prefix], no trailing slash
   * @param {CpodClientOptions['token']} token
   * @param {typeof fetch} fetchFn
   */
  constructor(base, token, fetchFn) {
    this.base = base;
    this.token = token;
    this.fetch = fetchFn;
  }

  /** @returns {Promise<string | null | undefined>} */
  async bearer() {
    const t = this.token;
    return typeof t === 'function' ? await t() : t;
  }

  /**
   * request sends one call and returns its response when the status is
   * 2xx; any other answer is thrown as a CpodError, its body consumed.
   * @param {string} method
   * @param {string} path escaped, starting with /v1/
   * @param {RequestInit2} [init]
   * @returns {Promise<Response>}
   */
  async request(method, path, init = {}) {
    let url = this.base + path;
    if (init.query) {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(init.query)) {
        if (v !== undefined && v !== null) q.set(k, String(v));
      }
      const s = q.toString();
      if (s) url += '?' + s;
    }
    /** @type {Record<string, string>} */
    const headers = { ...init.headers };
    /** @type {RequestInit & {duplex?: string}} */
    const req = { method, headers, signal: init.signal };
    if (init.json !== undefined) {
      req.body = JSON.stringify(init.json);
      headers['Content-Type'] = 'application/json';
    } else if (init.body != null) {
      req.body = init.body;
      if (isStreamBody(init.body)) req.duplex = 'half';
    }
    const tok = await this.bearer();
    if (tok) headers['Authorization'] = 'Bearer ' + tok;
    const res = await this.fetch(url, req);
    if (res.status < 200 || res.status > 299) {
      throw await errorFromResponse(res, method, url);
    }
    return res;
  }

  /**
   * json sends a call and decodes its JSON answer.
   * @param {string} method
   * @param {string} path
   * @param {RequestInit2} [init]
   * @returns {Promise<any>}
   */
  async json(method, path, init = {}) {
    const res = await this.request(method, path, {
      ...init,
      headers: { Accept: 'application/json', ...init.headers },
    });
    return res.json();
  }

  /**
   * empty sends a call whose answer has no body worth reading (204).
   * @param {string} method
   * @param {string} path
   * @param {RequestInit2} [init]
   * @returns {Promise<Response>}
   */
  async empty(method, path, init = {}) {
    const res = await this.request(method, path, init);
    // Release the connection: a 204 has no body; anything else is read off.
    if (res.body) await res.body.cancel().catch(() => {});
    return res;
  }

  /**
   * resolve makes a URL the engine answered absolute, relative to the base.
   * @param {string} ref
   */
  resolve(ref) {
    try {
      return new URL(ref, this.base + '/').href;
    } catch {
      return ref;
    }
  }
}

/**
 * @param {unknown} body
 * @returns {boolean}
 */
function isStreamBody(body) {
  return typeof ReadableStream !== 'undefined' && body instanceof ReadableStream ||
    (body != null && typeof body === 'object' && Symbol.asyncIterator in body);
}

/**
 * The client of a cpod storage API: `sdk.storage.files`, `.db` and `.kv`.
 */
export class CpodClient {
  /** @type {Transport} */
  #t;

  /**
   * @param {CpodClientOptions} options
   */
  constructor(options) {
    if (options == null || typeof options !== 'object') {
      throw new TypeError('CpodClient: options { baseUrl, token } are required');
    }
    const { baseUrl, token, fetch: fetchFn } = options;
    const base = normalizeBase(baseUrl);
    if (token != null && typeof token !== 'string' && typeof token !== 'function') {
      throw new TypeError('CpodClient: token must be a string or a function that returns one');
    }
    const f = fetchFn ?? globalThis.fetch;
    if (typeof f !== 'function') {
      throw new TypeError('CpodClient: no fetch in this runtime; pass options.fetch');
    }
    // Called through a closure: browsers refuse window.fetch called with
    // another `this`.
    this.#t = new Transport(base, token, (input, init) => f(input, init));
    /** The base URL calls go to, without a trailing slash. */
    this.baseUrl = base;
    /** The storage primitives, as in the seed: files, db and kv; and usage. */
    const t = this.#t;
    this.storage = Object.freeze({
      files: new Files(t),
      db: new Db(t),
      kv: new Kv(t),
      /** @param {import('../index.js').TierOptions} [options] */
      usage: (options) => usage(t, options),
    });
  }

  /**
   * fromEnv returns a client for the API in CPOD_API_URL that sends the
   * token in CPOD_TOKEN, as the Go client's FromEnv does. options may give
   * a token (a refresh function, say) that replaces CPOD_TOKEN, or a fetch.
   * It throws a TypeError when CPOD_API_URL is unset or empty, and when
   * CPOD_TOKEN is too and options give no token.
   * @param {Partial<CpodClientOptions>} [options]
   * @returns {CpodClient}
   */
  static fromEnv(options = {}) {
    const env = /** @type {any} */ (globalThis).process?.env;
    if (!env) {
      throw new TypeError('CpodClient.fromEnv: no process.env in this runtime; use new CpodClient({ baseUrl, token })');
    }
    const baseUrl = env.CPOD_API_URL;
    if (!baseUrl) {
      throw new TypeError('CpodClient.fromEnv: CPOD_API_URL is not set');
    }
    // Without a token every call would fail with 401: say so here, once.
    const token = options.token ?? (env.CPOD_TOKEN || undefined);
    if (!token) {
      throw new TypeError('CpodClient.fromEnv: CPOD_TOKEN is not set (or pass options.token)');
    }
    return new CpodClient({ baseUrl, ...options, token });
  }
}

/**
 * normalizeBase checks an http(s) base URL, which may end in a path prefix
 * (the engine mounted below the root), and drops its trailing slashes.
 * @param {unknown} baseUrl
 * @returns {string}
 */
function normalizeBase(baseUrl) {
  if (typeof baseUrl !== 'string' || baseUrl === '') {
    throw new TypeError('CpodClient: baseUrl is required, such as "https://api.example.com"');
  }
  let u;
  try {
    u = new URL(baseUrl);
  } catch {
    throw new TypeError(`CpodClient: invalid baseUrl ${JSON.stringify(baseUrl)}`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new TypeError(`CpodClient: baseUrl ${JSON.stringify(baseUrl)}: scheme must be http or https`);
  }
  if (u.search || u.hash || u.username || u.password) {
    throw new TypeError(`CpodClient: baseUrl ${JSON.stringify(baseUrl)} must not have user info, a query or a fragment`);
  }
  return (u.origin + u.pathname).replace(/\/+$/, '');
}

export { CpodError, localError };
