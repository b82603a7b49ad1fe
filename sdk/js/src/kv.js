// @ts-check
import { escapeSegment } from './encode.js';
import { CpodError, localError } from './errors.js';

/** @typedef {import('./client.js').Transport} Transport */
/** @typedef {import('../index.js').Tier} Tier */
/** @typedef {import('../index.js').KvSetOptions} KvSetOptions */

/**
 * Kv is ephemeral key-value storage, sdk.storage.kv. Values are strings;
 * keys may expire. It works in the private tier unless made with withTier.
 */
export class Kv {
  /** @type {Transport} */
  #t;
  /** @type {Tier | undefined} */
  #tier;

  /**
   * @param {Transport} t
   * @param {Tier} [tier]
   */
  constructor(t, tier) {
    this.#t = t;
    this.#tier = tier;
  }

  /**
   * withTier returns a Kv that works in tier; this one is unchanged.
   * @param {Tier} tier
   * @returns {Kv}
   */
  withTier(tier) {
    return new Kv(this.#t, tier);
  }

  /** @param {string} key */
  #path(key) {
    return '/v1/storage/kv/' + escapeSegment('key', key);
  }

  /**
   * @param {string} key
   * @param {unknown} value
   * @param {KvSetOptions} [options]
   * @returns {Promise<void>}
   */
  async set(key, value, options = {}) {
    const p = this.#path(key);
    if (value === undefined || typeof value === 'function' || typeof value === 'symbol') {
      throw localError(`kv ${JSON.stringify(key)}: value must be a string or a JSON value`);
    }
    /** @type {{value: unknown, ttl?: number}} */
    const body = { value };
    if (options.ttl !== undefined && options.ttl !== null && options.ttl !== 0) {
      if (typeof options.ttl !== 'number' || !(options.ttl > 0) || !Number.isFinite(options.ttl)) {
        throw localError('ttl must be a positive number of seconds');
      }
      // Whole seconds on the wire, rounded up so 0.5 s never means "none".
      body.ttl = Math.ceil(options.ttl);
    }
    await this.#t.empty('PUT', p, { query: { tier: this.#tier }, json: body, signal: options.signal });
  }

  /**
   * @param {string} key
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<string | null>}
   */
  async get(key, options = {}) {
    const p = this.#path(key);
    try {
      const out = await this.#t.json('GET', p, { query: { tier: this.#tier }, signal: options.signal });
      return out.value;
    } catch (e) {
      if (isNotFound(e)) return null;
      throw e;
    }
  }

  /**
   * head answers the Cpod-Ttl of key, or null when it is missing.
   * @param {string} key
   * @param {AbortSignal} [signal]
   * @returns {Promise<string | null>}
   */
  async #head(key, signal) {
    const p = this.#path(key);
    try {
      const res = await this.#t.empty('HEAD', p, { query: { tier: this.#tier }, signal });
      return res.headers.get('Cpod-Ttl') ?? '';
    } catch (e) {
      if (isNotFound(e)) return null;
      throw e;
    }
  }

  /**
   * @param {string} key
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<boolean>}
   */
  async exists(key, options = {}) {
    return (await this.#head(key, options.signal)) !== null;
  }

  /**
   * @param {string} key
   * @param {number | bigint} [by]
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<any>}
   */
  async incr(key, by = 1, options = {}) {
    const p = this.#path(key);
    const big = typeof by === 'bigint';
    if (!big && !Number.isSafeInteger(by)) {
      throw localError('incr: by must be an integer (a bigint beyond 2^53)');
    }
    // A bigint is written as its digits: JSON.stringify cannot.
    const res = await this.#t.request('POST', p, {
      query: { tier: this.#tier },
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: `{"by":${by.toString()}}`,
      signal: options.signal,
    });
    // Read the digits, not a JSON number: int64 counters may pass 2^53.
    const text = await res.text();
    const m = /"value"\s*:\s*(-?\d+)/.exec(text);
    if (!m) throw new CpodError({ status: res.status, code: '', message: 'incr: unexpected answer ' + text.slice(0, 200) });
    if (big) return BigInt(m[1]);
    const n = Number(m[1]);
    if (!Number.isSafeInteger(n)) {
      throw new RangeError(`incr: ${JSON.stringify(key)} is now ${m[1]}, beyond 2^53: pass by as a bigint to read it exactly`);
    }
    return n;
  }

  /**
   * @param {string} key
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<number | null>}
   */
  async ttl(key, options = {}) {
    const h = await this.#head(key, options.signal);
    if (h === null) return null;
    const n = Number.parseInt(h, 10);
    if (!/^-?\d+$/.test(h) || Number.isNaN(n)) {
      throw new CpodError({ status: 200, code: '', message: `invalid Cpod-Ttl header ${JSON.stringify(h)}` });
    }
    return n < 0 ? -1 : n;
  }

  /**
   * @param {string} key
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<void>}
   */
  async del(key, options = {}) {
    await this.#t.empty('DELETE', this.#path(key), { query: { tier: this.#tier }, signal: options.signal });
  }
}

/** @param {unknown} e */
function isNotFound(e) {
  return e instanceof CpodError && e.status === 404 && e.code === 'not_found';
}
