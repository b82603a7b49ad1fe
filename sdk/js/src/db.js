// @ts-check
import { escapeSegment } from './encode.js';
import { CpodError, localError } from './errors.js';

/** @typedef {import('./client.js').Transport} Transport */
/** @typedef {import('../index.js').Tier} Tier */
/** @typedef {import('../index.js').TierOptions} TierOptions */
/** @typedef {import('../index.js').QueryOptions} QueryOptions */
/** @typedef {import('../index.js').Filter} Filter */
/** @typedef {import('../index.js').BatchOp} BatchOp */

/** Db is structured document storage, sdk.storage.db. */
export class Db {
  /** @type {Transport} */
  #t;

  /** @param {Transport} t */
  constructor(t) {
    this.#t = t;
  }

  /**
   * collection returns a handle on the collection name; it sends nothing,
   * and a name that cannot be sent makes each call reject, not this one.
   * @param {string} name
   * @param {TierOptions} [options]
   * @returns {Collection}
   */
  collection(name, options = {}) {
    return new Collection(this.#t, name, options.tier);
  }
}

/** Collection is a named set of JSON documents in one tier. */
export class Collection {
  /** @type {Transport} */
  #t;
  /** @type {string} */
  #name;
  /** @type {Tier | undefined} */
  #tier;

  /**
   * @param {Transport} t
   * @param {string} name
   * @param {Tier | undefined} tier
   */
  constructor(t, name, tier) {
    this.#t = t;
    this.#name = name;
    this.#tier = tier;
  }

  /** The escaped path of the collection, or a CpodError for a name that cannot be sent. */
  get #path() {
    return '/v1/storage/db/' + escapeSegment('collection name', this.#name);
  }

  /** @param {string} key */
  #doc(key) {
    return this.#path + '/' + escapeSegment('document key', key);
  }

  /**
   * @param {string} key
   * @param {unknown} value
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<void>}
   */
  async set(key, value, options = {}) {
    const p = this.#doc(key);
    const json = JSON.stringify(value);
    if (json === undefined) throw localError(`document ${JSON.stringify(key)}: value is not JSON (undefined or a function)`);
    await this.#t.empty('PUT', p, {
      query: { tier: this.#tier },
      headers: { 'Content-Type': 'application/json' },
      body: json,
      signal: options.signal,
    });
  }

  /**
   * @param {string} key
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<any>}
   */
  async get(key, options = {}) {
    const p = this.#doc(key);
    try {
      const out = await this.#t.json('GET', p, { query: { tier: this.#tier }, signal: options.signal });
      return out.value;
    } catch (e) {
      if (e instanceof CpodError && e.status === 404 && e.code === 'not_found') return null;
      throw e;
    }
  }

  /**
   * @param {string} key
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<void>}
   */
  async delete(key, options = {}) {
    await this.#t.empty('DELETE', this.#doc(key), { query: { tier: this.#tier }, signal: options.signal });
  }

  /**
   * @param {QueryOptions} [q]
   */
  async query(q = {}) {
    const path = this.#path + '/query';
    const parts = [];
    if (q.filter !== undefined) parts.push('"filter":' + JSON.stringify(q.filter));
    if (q.sort !== undefined) parts.push('"sort":' + sortJSON(q.sort));
    if (q.limit !== undefined) parts.push('"limit":' + JSON.stringify(q.limit));
    if (q.cursor) parts.push('"cursor":' + JSON.stringify(q.cursor));
    const res = await this.#t.request('POST', path, {
      query: { tier: this.#tier },
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: '{' + parts.join(',') + '}',
      signal: q.signal,
    });
    const out = await res.json();
    return { items: out.items ?? [], nextCursor: out.nextCursor ?? null };
  }

  /**
   * count answers how many documents match filter (all without one).
   * @param {Filter} [filter]
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<number>}
   */
  async count(filter, options = {}) {
    const out = await this.#t.json('POST', this.#path + '/count', {
      query: { tier: this.#tier },
      json: filter === undefined ? {} : { filter },
      signal: options.signal,
    });
    return out.count;
  }

  /**
   * @param {BatchOp[]} ops
   * @param {{signal?: AbortSignal}} [options]
   */
  async batch(ops, options = {}) {
    const path = this.#path + '/batch';
    if (!Array.isArray(ops)) throw localError('batch takes an array of operations');
    const wire = ops.map((op) =>
      op && op.op === 'delete' ? { op: 'delete', key: op.key } : { op: op?.op, key: op?.key, value: op?.value },
    );
    const out = await this.#t.json('POST', path, {
      query: { tier: this.#tier },
      json: { ops: wire },
      signal: options.signal,
    });
    return { succeeded: out.succeeded, failed: out.failed, results: out.results ?? [] };
  }
}

/**
 * sortJSON writes the sort as the wire's object, its fields in the order
 * given. An object keeps its insertion order except for integer-like
 * names ("0", "10"), which JavaScript moves first; an array of
 * [field, 1 | -1] pairs keeps any order.
 * @param {QueryOptions['sort']} sort
 * @returns {string}
 */
function sortJSON(sort) {
  const pairs = Array.isArray(sort) ? sort : Object.entries(sort ?? {});
  return '{' + pairs.map(([f, d]) => JSON.stringify(f) + ':' + JSON.stringify(d)).join(',') + '}';
}
