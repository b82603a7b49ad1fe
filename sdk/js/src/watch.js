// @ts-check
import { CpodError } from './errors.js';

/** @typedef {import('./client.js').Transport} Transport */
/** @typedef {import('../index.js').ChangeEvent} ChangeEvent */
/** @typedef {import('../index.js').WatchOptions} WatchOptions */
/** @typedef {import('../index.js').WatchHandle} WatchHandle */

/**
 * watch follows a change feed (Server-Sent Events over fetch, since
 * EventSource cannot send Authorization). Without onEvent it returns an
 * async iterable of events; with onEvent it calls it for each event and
 * returns a handle whose close() stops it and whose `done` settles when it
 * stopped (rejecting with the error that ended it).
 *
 * A dropped connection, or a stream the engine ended because its token
 * expired, is reopened with Last-Event-ID and a fresh token from the
 * client's token function, so nothing is lost within the engine's
 * retention; events come at least once. A refusal that a retry cannot cure
 * (invalid_scope, a token the function does not renew) ends it with its
 * CpodError.
 *
 * @param {Transport} t
 * @param {string} path
 * @param {Record<string, string | undefined>} query
 * @param {WatchOptions} options
 * @param {((event: ChangeEvent) => void | Promise<void>) | undefined} onEvent
 * @returns {any}
 */
export function watch(t, path, query, options, onEvent) {
  if (!onEvent) return { [Symbol.asyncIterator]: () => feed(t, path, query, options, options.signal) };
  const ac = new AbortController();
  const outer = options.signal;
  const stop = () => ac.abort();
  outer?.addEventListener('abort', stop, { once: true });
  const done = (async () => {
    try {
      for await (const ev of feed(t, path, query, options, ac.signal)) await onEvent(ev);
    } finally {
      outer?.removeEventListener('abort', stop);
    }
  })();
  done.catch(() => {}); // the caller may not await it
  return { close: stop, done };
}

/**
 * @param {Transport} t
 * @param {string} path
 * @param {Record<string, string | undefined>} query
 * @param {WatchOptions} options
 * @param {AbortSignal | undefined} signal
 * @returns {AsyncGenerator<ChangeEvent>}
 */
async function* feed(t, path, query, options, signal) {
  let last = options.lastEventId ?? '';
  let backoff = 50;
  while (!signal?.aborted) {
    /** @type {Response} */
    let res;
    try {
      /** @type {Record<string, string>} */
      const headers = { Accept: 'text/event-stream' };
      if (last) headers['Last-Event-ID'] = last;
      res = await t.request('GET', path, { query, headers, signal });
    } catch (e) {
      if (signal?.aborted) return;
      if (e instanceof CpodError && e.status !== 429 && e.status < 500) throw e;
      if (e instanceof CpodError && e.retryAfter) backoff = Math.max(backoff, e.retryAfter * 1000);
      await sleep(backoff, signal);
      backoff = Math.min(backoff * 2, 5000);
      continue;
    }
    backoff = 50;
    /** @type {{error: string, message: string} | null} */
    let ended = null;
    const body = /** @type {ReadableStream<Uint8Array>} */ (res.body);
    try {
      for await (const ev of parse(body, signal)) {
        if (signal?.aborted) return;
        if (ev.id) last = ev.id;
        if (ev.event === 'error') {
          ended = JSON.parse(ev.data || '{}');
          break;
        }
        if (!ev.event) continue;
        /** @type {ChangeEvent} */
        const out = { id: ev.id, type: /** @type {any} */ (ev.event), key: '' };
        if (ev.data) {
          const d = JSON.parse(ev.data);
          out.key = d.key ?? '';
          if ('value' in d) out.value = d.value;
          if (d.etag !== undefined) out.etag = d.etag;
          if (d.size !== undefined) out.size = d.size;
        }
        yield out;
      }
    } catch (e) {
      if (signal?.aborted) return;
      // The connection dropped: reconnect below.
    } finally {
      await body.cancel().catch(() => {});
    }
    if (ended && ended.error !== 'invalid_token') {
      throw new CpodError({ status: 403, code: ended.error, message: ended.message });
    }
    // Ended by the engine (the token expired) or dropped: reconnect.
  }
}

/**
 * parse reads SSE blocks from a byte stream.
 * @param {ReadableStream<Uint8Array>} body
 * @param {AbortSignal | undefined} signal
 * @returns {AsyncGenerator<{id: string, event: string, data: string}>}
 */
async function* parse(body, signal) {
  const reader = body.getReader();
  const dec = new TextDecoder();
  let buf = '';
  let id = '', event = '', data = /** @type {string | null} */ (null);
  try {
    for (;;) {
      if (signal?.aborted) return;
      const { value, done } = await reader.read();
      if (done) return;
      buf += dec.decode(value, { stream: true });
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, '');
        buf = buf.slice(nl + 1);
        if (line === '') {
          if (event || data !== null || id) yield { id, event, data: data ?? '' };
          id = '';
          event = '';
          data = null;
          continue;
        }
        if (line[0] === ':') continue;
        const i = line.indexOf(':');
        const field = i < 0 ? line : line.slice(0, i);
        const v = i < 0 ? '' : line.slice(i + 1).replace(/^ /, '');
        if (field === 'id') id = v;
        else if (field === 'event') event = v;
        else if (field === 'data') data = data === null ? v : data + '\n' + v;
      }
    }
  } finally {
    reader.releaseLock();
  }
}

/**
 * @param {number} ms
 * @param {AbortSignal | undefined} signal
 */
function sleep(ms, signal) {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve(undefined);
    }, { once: true });
  });
}
