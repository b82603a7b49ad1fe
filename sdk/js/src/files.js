// @ts-check
import { escapePath } from './encode.js';
import { watch } from './watch.js';
import { errorFromResponse, localError } from './errors.js';

/** @typedef {import('./client.js').Transport} Transport */
/** @typedef {import('../index.js').FileData} FileData */
/** @typedef {import('../index.js').FileWriteOptions} FileWriteOptions */
/** @typedef {import('../index.js').FileWriteResult} FileWriteResult */
/** @typedef {import('../index.js').FileReadOptions} FileReadOptions */
/** @typedef {import('../index.js').FileUrlOptions} FileUrlOptions */
/** @typedef {import('../index.js').FileUploadUrlOptions} FileUploadUrlOptions */
/** @typedef {import('../index.js').SignedUploadOptions} SignedUploadOptions */
/** @typedef {import('../index.js').FileListOptions} FileListOptions */
/** @typedef {import('../index.js').FileListing} FileListing */
/** @typedef {import('../index.js').TierOptions} TierOptions */

const isNode = !!(/** @type {any} */ (globalThis).process?.versions?.node);

/**
 * Files is blob storage, sdk.storage.files. Paths are relative to the tier,
 * such as "config/settings.json".
 */
export class Files {
  /** @type {Transport} */
  #t;

  /** @param {Transport} t */
  constructor(t) {
    this.#t = t;
  }

  /**
   * watch follows a tier's file changes (write and delete events, metadata
   * only; see Collection.watch).
   * @param {import('../index.js').WatchOptions & {tier?: import('../index.js').Tier}} [options]
   * @param {(event: import('../index.js').ChangeEvent) => void | Promise<void>} [onEvent]
   * @returns {any}
   */
  watch(options = {}, onEvent) {
    return watch(this.#t, '/v1/storage/files/changes', { tier: options.tier, prefix: options.prefix }, options, onEvent);
  }

  /**
   * @param {string} path
   * @param {FileData} data
   * @param {FileWriteOptions} [options]
   * @returns {Promise<FileWriteResult>}
   */
  async write(path, data, options = {}) {
    const p = escapePath(path);
    const { body, type } = await toBody(data);
    return this.#t.json('PUT', '/v1/storage/files/' + p, {
      query: { tier: options.tier },
      headers: { 'Content-Type': options.contentType || type || 'application/octet-stream' },
      body,
      signal: options.signal,
    });
  }

  /**
   * @param {string} path
   * @param {FileReadOptions} [options]
   * @returns {Promise<ReadableStream<Uint8Array>>}
   */
  async read(path, options = {}) {
    const p = escapePath(path);
    /** @type {Record<string, string>} */
    const headers = {};
    const { offset = 0, length = 0 } = options;
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(length) || length < 0) {
      throw localError('read offset and length must be non-negative integers');
    }
    if (offset > 0 || length > 0) {
      headers['Range'] = `bytes=${offset}-${length > 0 ? offset + length - 1 : ''}`;
    }
    const res = await this.#t.request('GET', '/v1/storage/files/' + p, {
      query: { tier: options.tier },
      headers,
      signal: options.signal,
    });
    return res.body ?? new ReadableStream({ start: (c) => c.close() });
  }

  /**
   * @param {string} path
   * @param {FileUrlOptions} [options]
   * @returns {Promise<string>}
   */
  async url(path, options = {}) {
    escapePath(path); // the same checks as every other call
    /** @type {{key: string, tier?: string, expiresIn?: number}} */
    const body = { key: path };
    if (options.tier !== undefined) body.tier = options.tier;
    if (options.expiresIn !== undefined) body.expiresIn = expirySeconds(options.expiresIn);
    const out = await this.#t.json('POST', '/v1/storage/signed-urls', { json: body, signal: options.signal });
    return this.#t.resolve(out.url);
  }

  /**
   * uploadUrl asks for a URL that stores one file at path when its bytes
   * are PUT to it with no Authorization header (uploadToSignedUrl). Like
   * url, it answers the URL string: the one thing to hand over, and the
   * caller already knows the method (PUT) and chose the lifetime.
   * @param {string} path
   * @param {FileUploadUrlOptions} [options]
   * @returns {Promise<string>}
   */
  async uploadUrl(path, options = {}) {
    escapePath(path); // the same checks as every other call
    /** @type {{key: string, tier?: string, method: 'PUT', expiresIn?: number, contentType?: string, maxSize?: number}} */
    const body = { key: path, method: 'PUT' };
    if (options.tier !== undefined) body.tier = options.tier;
    if (options.expiresIn !== undefined) body.expiresIn = expirySeconds(options.expiresIn);
    const { contentType, maxSize } = options;
    if (contentType !== undefined && contentType !== '') {
      if (typeof contentType !== 'string') throw localError('contentType must be a string such as "image/png"');
      body.contentType = contentType;
    }
    if (maxSize !== undefined) {
      if (!Number.isSafeInteger(maxSize) || maxSize < 1) {
        throw localError('maxSize must be a whole number of bytes, at least 1');
      }
      body.maxSize = maxSize;
    }
    const out = await this.#t.json('POST', '/v1/storage/signed-urls', { json: body, signal: options.signal });
    return this.#t.resolve(out.url);
  }

  /**
   * @param {string} [prefix]
   * @param {FileListOptions} [options]
   * @returns {Promise<FileListing>}
   */
  async list(prefix = '', options = {}) {
    const out = await this.#t.json('GET', '/v1/storage/files', {
      query: {
        prefix: prefix || undefined,
        limit: options.limit,
        cursor: options.cursor || undefined,
        tier: options.tier,
      },
      signal: options.signal,
    });
    return { items: out.items ?? [], nextCursor: out.nextCursor ?? null };
  }

  /**
   * @param {string} path
   * @param {TierOptions} [options]
   * @returns {Promise<void>}
   */
  async delete(path, options = {}) {
    const p = escapePath(path);
    await this.#t.empty('DELETE', '/v1/storage/files/' + p, { query: { tier: options.tier }, signal: options.signal });
  }
}

/**
 * expirySeconds checks a URL lifetime and rounds it up to whole seconds, as
 * the engine takes it.
 * @param {unknown} expiresIn
 * @returns {number}
 */
function expirySeconds(expiresIn) {
  if (typeof expiresIn !== 'number' || !(expiresIn > 0)) {
    throw localError('expiresIn must be a positive number of seconds');
  }
  return Math.ceil(expiresIn);
}

/**
 * uploadToSignedUrl stores data through an upload URL (files.uploadUrl):
 * a PUT with no Authorization header and no cookies, the URL being the
 * only credential. The Content-Type sent is options.contentType, else a
 * Blob's own type, else the one the URL was signed for, else
 * application/octet-stream. It answers the stored file's JSON, as
 * files.write; a refusal is a CpodError (403 invalid_signature for another
 * Content-Type or a download URL, 403 expired, 413 too_large).
 * @param {string | URL} url
 * @param {FileData} data
 * @param {SignedUploadOptions} [options]
 * @returns {Promise<FileWriteResult>}
 */
export async function uploadToSignedUrl(url, data, options = {}) {
  const target = signedTarget(url);
  const f = options.fetch ?? globalThis.fetch;
  if (typeof f !== 'function') {
    throw new TypeError('uploadToSignedUrl: no fetch in this runtime; pass options.fetch');
  }
  const { body, type } = await toBody(data);
  const contentType = options.contentType || type || target.searchParams.get('contentType') || 'application/octet-stream';
  /** @type {RequestInit & {duplex?: string}} */
  const req = {
    method: 'PUT',
    headers: { 'Content-Type': contentType, Accept: 'application/json' },
    body,
    credentials: 'omit',
    signal: options.signal,
  };
  if (isStream(body)) req.duplex = 'half';
  const res = await f(target.href, req);
  if (res.status < 200 || res.status > 299) throw await errorFromResponse(res, 'PUT', target.href);
  return res.json();
}

/**
 * signedTarget parses an upload URL: absolute http(s), or in a browser
 * relative to the page.
 * @param {unknown} url
 * @returns {URL}
 */
function signedTarget(url) {
  if (typeof url !== 'string' && !(url instanceof URL)) throw localError('the upload URL must be a string');
  let u;
  try {
    u = new URL(url, /** @type {any} */ (globalThis).location?.href);
  } catch {
    throw localError('the upload URL is not a valid URL');
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw localError('the upload URL must be http or https');
  return u;
}

/**
 * @param {unknown} body
 * @returns {boolean}
 */
function isStream(body) {
  return typeof ReadableStream !== 'undefined' && body instanceof ReadableStream ||
    (body != null && typeof body === 'object' && Symbol.asyncIterator in body);
}

/**
 * toBody turns file data into a fetch body. Byte arrays, strings and Blobs
 * go as they are. A stream (a ReadableStream, or in Node any async iterable
 * of bytes such as fs.createReadStream) is streamed in Node; browsers send
 * a streamed request body only over HTTP/2, so there it is gathered into a
 * Blob first.
 * @param {FileData} data
 * @returns {Promise<{body: BodyInit, type: string}>}
 */
async function toBody(data) {
  if (typeof data === 'string') return { body: data, type: '' };
  if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
    return { body: /** @type {BodyInit} */ (data), type: '' };
  }
  if (typeof Blob !== 'undefined' && data instanceof Blob) return { body: data, type: data.type };
  if (data instanceof ReadableStream || (data != null && typeof data === 'object' && Symbol.asyncIterator in data)) {
    if (isNode) return { body: /** @type {BodyInit} */ (/** @type {unknown} */ (data)), type: '' };
    const stream = data instanceof ReadableStream ? data : iterableStream(/** @type {AsyncIterable<Uint8Array>} */ (data));
    return { body: await new Response(stream).blob(), type: '' };
  }
  throw localError('file data must be a string, Blob, ArrayBuffer, typed array (Buffer, Uint8Array) or ReadableStream');
}

/**
 * @param {AsyncIterable<Uint8Array>} it
 * @returns {ReadableStream<Uint8Array>}
 */
function iterableStream(it) {
  const iter = it[Symbol.asyncIterator]();
  return new ReadableStream({
    async pull(c) {
      const { value, done } = await iter.next();
      if (done) c.close();
      else c.enqueue(value);
    },
    async cancel(reason) {
      await iter.return?.(reason);
    },
  });
}
