// @ts-check
import { escapeSegment } from './encode.js';
import { watch } from './watch.js';
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

  /**
   * watch follows this tier's kv changes (see Collection.watch); set events
   * carry the stored string, a TTL change none.
   * @param {import('../index.js').WatchOptions} [options]
   * @param {(event: import('../index.js').ChangeEvent) => void | Promise<void>} [onEvent]
   * @returns {any}
   */
  watch(options = {}, onEvent) {
    return watch(this.#t, '/v1/storage/kv/changes', { tier: this.#tier, prefix: options.prefix }, options, onEvent);
  }

  /** @param {string} key */
  #path(key) {
    return '/v1/storage/kv/' + escapeSegment('key', key);
  }

  /**
   * set stores value under key. With ifAbsent: true it writes only when key
   * is missing, with ifValue only when key holds exactly that string (null:
   * only when it is missing), each check and write one atomic step on the
   * engine. It resolves to true when it wrote, false when the condition did
   * not hold (412 conflict; nothing was written); a plain set always writes
   * and resolves to true.
   * @param {string} key
   * @param {unknown} value
   * @param {KvSetOptions} [options]
   * @returns {Promise<boolean>}
   */
  async set(key, value, options = {}) {
    const p = this.#path(key);
    if (value === undefined || typeof value === 'function' || typeof value === 'symbol') {
      throw localError(`kv ${JSON.stringify(key)}: value must be a string or a JSON value`);
    }
    /** @type {{value: unknown, ttl?: number, ifAbsent?: true, ifValue?: string}} */
    const body = { value };
    const ttl = wireTtl(options.ttl, 0);
    if (ttl !== null) body.ttl = ttl;
    const ifAbsent = condition(options, 'ifAbsent');
    const ifValue = condition(options, 'ifValue');
    if (ifAbsent !== undefined && typeof ifAbsent !== 'boolean') {
      throw localError('kv.set: ifAbsent must be true or false');
    }
    if (ifAbsent === true && ifValue !== undefined) {
      throw localError('kv.set: ifAbsent and ifValue cannot be used together');
    }
    if (ifAbsent === true || ifValue === null) {
      // ifValue: null is the value kv.get answers for a missing key.
      body.ifAbsent = true;
    } else if (ifValue !== undefined) {
      if (typeof ifValue !== 'string') {
        throw localError('kv.set: ifValue must be a string, the current value as kv.get answers it (null for a missing key)');
      }
      body.ifValue = ifValue;
    }
    const conditional = body.ifAbsent !== undefined || body.ifValue !== undefined;
    return this.#conditionHeld(conditional, this.#t.empty('PUT', p, { query: { tier: this.#tier }, json: body, signal: options.signal }));
  }

  /**
   * conditionHeld resolves to true when the call succeeds, and to false when
   * a conditional call is answered 412 conflict; any other failure rejects.
   * @param {boolean} conditional
   * @param {Promise<unknown>} call
   * @returns {Promise<boolean>}
   */
  async #conditionHeld(conditional, call) {
    try {
      await call;
      return true;
    } catch (e) {
      if (conditional && e instanceof CpodError && e.status === 412 && e.code === 'conflict') return false;
      throw e;
    }
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
   * del removes key; a missing key is not an error, and a plain del
   * resolves to undefined. With ifValue it removes key only when it holds
   * exactly that string, in one atomic step on the engine, and resolves to
   * true when it did, false when key was missing or held another value.
   * @param {string} key
   * @param {{signal?: AbortSignal, ifValue?: string}} [options]
   * @returns {Promise<boolean | undefined>}
   */
  async del(key, options = {}) {
    const p = this.#path(key);
    const ifValue = condition(options, 'ifValue');
    if (ifValue === undefined) {
      await this.#t.empty('DELETE', p, { query: { tier: this.#tier }, signal: options.signal });
      return undefined;
    }
    if (typeof ifValue !== 'string') {
      throw localError('kv.del: ifValue must be a string, the value the key must hold to be removed');
    }
    return this.#conditionHeld(true, this.#t.empty('DELETE', p, { query: { tier: this.#tier }, json: { ifValue }, signal: options.signal }));
  }

  /**
   * expire sets the seconds key has left to ttl (rounded up to whole
   * seconds), keeping its value, or removes its TTL when ttl is null. It
   * resolves to true, or false when key is missing. It is not conditional:
   * to extend a lock only while holding it, set it again with ifValue and
   * a ttl.
   * @param {string} key
   * @param {number | null} ttl
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<boolean>}
   */
  async expire(key, ttl, options = {}) {
    const p = this.#path(key);
    if (ttl !== null && typeof ttl !== 'number') {
      throw localError('kv.expire: ttl must be a positive number of seconds, or null to remove the TTL');
    }
    const seconds = ttl === null ? null : wireTtl(ttl, null);
    try {
      await this.#t.empty('PATCH', p, { query: { tier: this.#tier }, json: { ttl: seconds }, signal: options.signal });
      return true;
    } catch (e) {
      if (isNotFound(e)) return false;
      throw e;
    }
  }
}

/**
 * condition returns options[name]; an own property set to undefined is
 * refused, so that an unset variable (a lock id never assigned, say) never
 * turns a conditional call into an unconditional one.
 * @param {object} options
 * @param {'ifAbsent' | 'ifValue'} name
 * @returns {unknown}
 */
function condition(options, name) {
  if (options == null || typeof options !== 'object') return undefined;
  const v = /** @type {Record<string, unknown>} */ (options)[name];
  if (v === undefined && Object.hasOwn(options, name)) {
    throw localError(`kv: ${name} is undefined; leave it out for no condition`);
  }
  return v;
}

/**
 * wireTtl checks a ttl in seconds and returns the whole seconds to send,
 * rounded up so that 0.5 s never means "none"; null for none. none is the
 * ttl meaning "no TTL" (0 for set), or null when every ttl must be positive.
 * @param {unknown} ttl
 * @param {0 | null} none
 * @returns {number | null}
 */
function wireTtl(ttl, none) {
  if (ttl === undefined || ttl === null || ttl === none) {
    if (none === null) throw localError('ttl must be a positive number of seconds');
    return null;
  }
  if (typeof ttl !== 'number' || !(ttl > 0) || !Number.isFinite(ttl)) {
    throw localError('ttl must be a positive number of seconds');
  }
  return Math.ceil(ttl);
}

/** @param {unknown} e */
function isNotFound(e) {
  return e instanceof CpodError && e.status === 404 && e.code === 'not_found';
}
