// @ts-check
import { localError } from './errors.js';

const utf8 = new TextEncoder();
const hex = '0123456789ABCDEF';

// Bytes that Go's url.PathEscape leaves as they are: the unreserved
// characters of RFC 3986 (letters, digits, - . _ ~) and $ & + : = @. The Go
// client (client/ in this repository) escapes with url.PathEscape, and this
// SDK sends byte for byte the same paths.
const keep = new Uint8Array(128);
for (const c of 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~$&+:=@') {
  keep[c.charCodeAt(0)] = 1;
}

/**
 * escapeSegment percent-encodes s as exactly one URL path segment, as Go's
 * url.PathEscape does: UTF-8, every byte outside the kept set as %XX, so a
 * '/' in s is sent as %2F and a '%' as %25 (never read as an escape).
 *
 * The segments '.' and '..' cannot be sent at all: the Go client writes them
 * as %2E and %2E%2E, but fetch parses URLs as the WHATWG URL standard says,
 * which treats those as dot segments and removes them, so the request would
 * go to another resource. They are refused here instead.
 *
 * @param {string} what names s in an error, such as "key"
 * @param {string} s
 * @returns {string}
 */
export function escapeSegment(what, s) {
  if (typeof s !== 'string') {
    throw localError(`${what} must be a string, got ${s === null ? 'null' : typeof s}`);
  }
  if (s === '') throw localError(`${what} is empty`);
  if (s === '.' || s === '..') {
    throw localError(`${what} ${JSON.stringify(s)} cannot be sent: fetch removes '.' and '..' URL path segments`);
  }
  if (!isWellFormed(s)) {
    throw localError(`${what} is not valid Unicode (it holds a lone surrogate)`);
  }
  // A key named "changes": the engine's GET .../changes is the change feed,
  // matched on the escaped path, so %63hanges reaches the key (as the Go
  // client sends it). Collection names are not affected.
  if (s === 'changes' && what !== 'collection name') return '%63hanges';
  let out = '';
  for (const b of utf8.encode(s)) {
    out += b < 128 && keep[b] ? String.fromCharCode(b) : '%' + hex[b >> 4] + hex[b & 15];
  }
  return out;
}

/**
 * escapePath percent-encodes a slash-separated file path segment by segment,
 * keeping the '/' between them. An empty segment (a leading, trailing or
 * doubled '/') cannot be sent faithfully and is refused, as the engine
 * would; so are '.' and '..' segments, which the engine refuses too.
 *
 * @param {string} p
 * @returns {string}
 */
export function escapePath(p) {
  if (typeof p !== 'string') {
    throw localError(`path must be a string, got ${p === null ? 'null' : typeof p}`);
  }
  if (p === '') throw localError('path is empty');
  const segs = p.split('/');
  if (segs.some((s) => s === '')) {
    throw localError(`path ${JSON.stringify(p)} has an empty segment (leading, trailing or double slash)`);
  }
  return segs.map((s) => escapeSegment(`path ${JSON.stringify(p)}: segment`, s)).join('/');
}

/**
 * @param {string} s
 * @returns {boolean}
 */
function isWellFormed(s) {
  // String.prototype.isWellFormed is in Node 20 and current browsers; the
  // regular expression is for older engines.
  const f = /** @type {any} */ (s).isWellFormed;
  if (typeof f === 'function') return f.call(s);
  return !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(s);
}
