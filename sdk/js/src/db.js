// @ts-check
import { escapeSegment } from './encode.js';
import { CpodError, localError } from './errors.js';
import { watch } from './watch.js';

/** @typedef {import('./client.js').Transport} Transport */
/** @typedef {import('../index.js').Tier} Tier */
/** @typedef {import('../index.js').TierOptions} TierOptions */
/** @typedef {import('../index.js').QueryOptions} QueryOptions */
/** @typedef {import('../index.js').Filter} Filter */
/** @typedef {import('../index.js').BatchOp} BatchOp */
/** @typedef {import('../index.js').CallOptions} CallOptions */
/** @typedef {import('../index.js').DocSetOptions} DocSetOptions */
/** @typedef {import('../index.js').DocIfMatchOptions} DocIfMatchOptions */

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
   * watch follows the collection's changes (set and delete events; reset
   * when events were missed): an async iterable without onEvent, else a
   * handle { close(), done }. See watch.js.
   * @param {import('../index.js').WatchOptions} [options]
   * @param {(event: import('../index.js').ChangeEvent) => void | Promise<void>} [onEvent]
   * @returns {any}
   */
  watch(options = {}, onEvent) {
    return watch(this.#t, this.#path + '/changes', { tier: this.#tier, key: options.key }, options, onEvent);
  }

  /**
   * set stores value under key, replacing any document there. With ifMatch
   * (an etag getWithEtag answered, or '*' for any existing document) it
   * writes only when the document exists with that version; with
   * ifNoneMatch: '*' only when it does not exist. The check and the write
   * are one atomic step on the engine. A plain set resolves to undefined; a
   * conditional one to true when it wrote, false when the condition did not
   * hold (412 conflict; nothing was written), as kv.set does.
   * @param {string} key
   * @param {unknown} value
   * @param {DocSetOptions} [options]
   * @returns {Promise<boolean | void>}
   */
  async set(key, value, options = {}) {
    const p = this.#doc(key);
    const json = JSON.stringify(value);
    if (json === undefined) throw localError(`document ${JSON.stringify(key)}: value is not JSON (undefined or a function)`);
    const cond = preconditions('set', options);
    const call = this.#t.empty('PUT', p, {
      query: { tier: this.#tier },
      headers: { 'Content-Type': 'application/json', ...cond },
      body: json,
      signal: options?.signal,
    });
    if (!cond) {
      await call;
      return;
    }
    return whenHeld(call.then(() => true));
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
      if (isNotFound(e)) return null;
      throw e;
    }
  }

  /**
   * exists reports whether a document is stored at key, with a HEAD request
   * that transfers no value: true, or false when there is none. Any other
   * failure, a wrong baseUrl included (404 unknown_endpoint), rejects.
   * @param {string} key
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<boolean>}
   */
  async exists(key, options = {}) {
    const p = this.#doc(key);
    try {
      await this.#t.empty('HEAD', p, { query: { tier: this.#tier }, signal: options.signal });
      return true;
    } catch (e) {
      if (isNotFound(e)) return false;
      throw e;
    }
  }

  /**
   * getWithEtag reads the document at key with its version: { value, etag },
   * or null when there is none. The etag (the ETag header, quoted, opaque)
   * changes on every write of the document; pass it as ifMatch to write
   * only that version.
   * @param {string} key
   * @param {{signal?: AbortSignal}} [options]
   * @returns {Promise<{value: any, etag: string} | null>}
   */
  async getWithEtag(key, options = {}) {
    const p = this.#doc(key);
    let res;
    try {
      res = await this.#t.request('GET', p, {
        query: { tier: this.#tier },
        headers: { Accept: 'application/json' },
        signal: options.signal,
      });
    } catch (e) {
      if (isNotFound(e)) return null;
      throw e;
    }
    const etag = res.headers.get('ETag');
    const out = await res.json();
    if (!etag) {
      // A proxy dropped it, or (in a browser) the engine's CORS answer does not expose it.
      throw new CpodError({ status: res.status, code: '', message: `document ${JSON.stringify(key)}: the answer has no readable ETag header` });
    }
    return { value: out.value, etag };
  }

  /**
   * delete removes the document at key; a missing one is not an error, and
   * a plain delete resolves to undefined. With ifMatch it removes only the
   * document of that version, atomically, and resolves to true when it did,
   * false when the document was missing or had another version (412).
   * @param {string} key
   * @param {DocIfMatchOptions | CallOptions} [options]
   * @returns {Promise<boolean | void>}
   */
  async delete(key, options = {}) {
    const p = this.#doc(key);
    const cond = preconditions('delete', options);
    const call = this.#t.empty('DELETE', p, { query: { tier: this.#tier }, headers: cond ?? {}, signal: options?.signal });
    if (!cond) {
      await call;
      return;
    }
    return whenHeld(call.then(() => true));
  }

  /**
   * patch merges patch, an object, into the document at key as a JSON Merge
   * Patch (RFC 7396), atomically on the engine, and resolves to the merged
   * value: each member of patch replaces that field (objects merge
   * recursively), a member set to null removes it, and fields the patch does
   * not name keep their value, so concurrent patches of different fields
   * all survive. A missing document rejects with 404 not_found. With ifMatch
   * it applies only to that version and resolves to false when the document
   * was missing or had another version (412; nothing was written).
   * @param {string} key
   * @param {Record<string, unknown>} patch
   * @param {DocIfMatchOptions | CallOptions} [options]
   * @returns {Promise<any>}
   */
  async patch(key, patch, options = {}) {
    const p = this.#doc(key);
    // An object patch always merges into an object, so a conditional
    // patch's false is never a merged value.
    const json = patch !== null && typeof patch === 'object' && !Array.isArray(patch) ? JSON.stringify(patch) : undefined;
    if (json === undefined || json[0] !== '{') {
      throw localError(`document ${JSON.stringify(key)}: a merge patch must be an object of the fields to change (use set to replace the whole value)`);
    }
    const cond = preconditions('patch', options);
    const call = this.#t.json('PATCH', p, {
      query: { tier: this.#tier },
      headers: { 'Content-Type': 'application/merge-patch+json', ...cond },
      body: json,
      signal: options?.signal,
    }).then((out) => out.value);
    return cond ? whenHeld(call) : call;
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

/**
 * preconditions checks the conditions of a single-document write and
 * returns their headers, or null for an unconditional call. A condition
 * given as undefined or null is refused, so that an etag never read (a
 * document that was missing, say) never turns a conditional write into an
 * unconditional one. ifNoneMatch ('*' only) applies to set alone.
 * @param {'set' | 'delete' | 'patch'} op
 * @param {unknown} options
 * @returns {Record<string, string> | null}
 */
function preconditions(op, options) {
  if (options == null || typeof options !== 'object') return null;
  const o = /** @type {Record<string, unknown>} */ (options);
  const has = (/** @type {string} */ name) => Object.hasOwn(o, name) || o[name] !== undefined;
  if (has('ifNoneMatch') && op !== 'set') {
    throw localError(`db.${op}: ifNoneMatch applies to set only`);
  }
  if (has('ifMatch') && has('ifNoneMatch')) {
    throw localError(`db.${op}: give ifMatch or ifNoneMatch, not both`);
  }
  if (has('ifMatch')) {
    const m = o.ifMatch;
    if (m == null) {
      throw localError(`db.${op}: ifMatch is ${m}; leave it out for no condition` + (op === 'set' ? ", or give ifNoneMatch: '*' to create only" : ''));
    }
    if (typeof m !== 'string' || !/^[\x20-\x7e]+$/.test(m)) {
      throw localError(`db.${op}: ifMatch must be an etag as getWithEtag answers it, or '*'`);
    }
    return { 'If-Match': m };
  }
  if (has('ifNoneMatch')) {
    if (o.ifNoneMatch !== '*') {
      throw localError(`db.set: ifNoneMatch must be '*' (write only when the document does not exist)`);
    }
    return { 'If-None-Match': '*' };
  }
  return null;
}

/**
 * whenHeld resolves to the result of a conditional call, or to false when
 * the engine answers 412 conflict (the condition did not hold); any other
 * failure rejects.
 * @template T
 * @param {Promise<T>} call
 * @returns {Promise<T | false>}
 */
async function whenHeld(call) {
  try {
    return await call;
  } catch (e) {
    if (e instanceof CpodError && e.status === 412 && e.code === 'conflict') return false;
    throw e;
  }
}

/** @param {unknown} e */
function isNotFound(e) {
  return e instanceof CpodError && e.status === 404 && e.code === 'not_found';
}
