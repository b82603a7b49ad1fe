// Change feeds against the real engine (./httpserver, the embedded store):
// collection.watch as an async iterator and with a callback, kv and files,
// resume with lastEventId, and a reconnect with a fresh token when the
// stream's token expires.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { CpodClient, CpodError } from '@cpod/sdk';
import { allScopes, startServer } from './helpers.js';

/** @type {Awaited<ReturnType<typeof startServer>>} */
let srv;
before(async () => {
  srv = await startServer();
  await srv.registerApp('app-w', allScopes);
  await srv.registerApp('app-r', ['storage.private.read']);
});
after(async () => {
  await srv?.stop();
});

/**
 * ready writes with write until the iterator yields an event of key, so
 * that the stream is open; it returns the iterator, past that event.
 * @param {AsyncIterator<import('@cpod/sdk').ChangeEvent>} it
 * @param {string} key
 * @param {() => Promise<unknown>} write
 */
async function ready(it, key, write) {
  const next = it.next();
  for (;;) {
    await write();
    const r = await Promise.race([next, new Promise((res) => setTimeout(() => res(null), 100))]);
    if (r) {
      assert.equal(/** @type {any} */ (r).value.key, key);
      return;
    }
  }
}

test('collection.watch follows sets and deletes, resumes with lastEventId, and stops on its signal', async () => {
  const sdk = new CpodClient({ baseUrl: srv.url, token: srv.token({ app: 'app-w', scopes: allScopes }) });
  const chat = sdk.storage.db.collection('chat');
  const ac = new AbortController();
  const it = chat.watch({ signal: ac.signal })[Symbol.asyncIterator]();
  await ready(it, 'ready', () => chat.set('ready', true));
  await chat.set('m1', { text: 'hi' });
  await chat.delete('m1');
  await chat.set('m2', { text: 'there' });
  const a = (await it.next()).value;
  assert.deepEqual([a.type, a.key, a.value], ['set', 'm1', { text: 'hi' }]);
  assert.match(a.etag, /^"/);
  const b = (await it.next()).value;
  assert.deepEqual([b.type, b.key, 'value' in b], ['delete', 'm1', false]);
  ac.abort();
  assert.equal((await it.next()).done, true);

  // Resume after a: the delete and m2 come again, nothing else.
  const got = [];
  const resumed = new AbortController();
  for await (const ev of chat.watch({ lastEventId: a.id, signal: resumed.signal })) {
    got.push(`${ev.type} ${ev.key}`);
    if (got.length === 2) resumed.abort();
  }
  assert.deepEqual(got, ['delete m1', 'set m2']);
});

test('kv.watch and files.watch with a callback; a key named "changes" is still read', async () => {
  const sdk = new CpodClient({ baseUrl: srv.url, token: srv.token({ app: 'app-w', scopes: allScopes }) });
  const { kv, files, db } = sdk.storage;
  /** @type {import('@cpod/sdk').ChangeEvent[]} */
  const kvEvents = [];
  /** @type {(v?: unknown) => void} */
  let wake = () => {};
  const h = kv.watch({ prefix: 'room/' }, (ev) => { kvEvents.push(ev); wake(); });
  while (!kvEvents.some((e) => e.key === 'room/ready')) {
    await kv.set('room/ready', '1');
    await new Promise((r) => { wake = r; setTimeout(r, 100); });
  }
  kvEvents.length = 0;
  await kv.set('other', 'x');
  await kv.set('room/a', { n: 1 });
  while (kvEvents.length < 1) await new Promise((r) => { wake = r; });
  assert.deepEqual(kvEvents.map((e) => [e.type, e.key, e.value]), [['set', 'room/a', '{"n":1}']]);
  h.close();
  await h.done;

  const fit = files.watch({ tier: 'shared' })[Symbol.asyncIterator]();
  await ready(fit, 'ready', () => files.write('ready', 'r', { tier: 'shared' }));
  await files.write('docs/a.txt', 'hello', { tier: 'shared' });
  const f = (await fit.next()).value;
  assert.deepEqual([f.type, f.key, f.size], ['write', 'docs/a.txt', 5]);
  await fit.return?.();

  await db.collection('c').set('changes', 'doc');
  assert.equal(await db.collection('c').get('changes'), 'doc');
  await kv.set('changes', 'v');
  assert.equal(await kv.get('changes'), 'v');
});

test('watch ends with invalid_scope; reconnects with a fresh token when the stream\'s token expires', async () => {
  const r = new CpodClient({ baseUrl: srv.url, token: srv.token({ app: 'app-r', scopes: allScopes }) });
  const e = await r.storage.kv.withTier('shared').watch()[Symbol.asyncIterator]().next().then(() => null, (err) => err);
  assert.ok(e instanceof CpodError);
  assert.equal(e.code, 'invalid_scope');

  // Tokens of 2 s, a new one for each request: the stream outlives several.
  let minted = 0;
  const sdk = new CpodClient({
    baseUrl: srv.url,
    token: () => { minted++; return srv.token({ app: 'app-w', scopes: allScopes, ttl: '2s' }); },
  });
  const col = sdk.storage.db.collection('long');
  const writer = new CpodClient({ baseUrl: srv.url, token: srv.token({ app: 'app-w', scopes: allScopes }) }).storage.db.collection('long');
  const ac = new AbortController();
  const it = col.watch({ signal: ac.signal })[Symbol.asyncIterator]();
  await ready(it, 'ready', () => writer.set('ready', 1));
  const before = minted;
  for (let i = 0; minted < before + 2; i++) {
    await writer.set(`k${i}`, i);
    const ev = (await it.next()).value;
    assert.equal(ev.key, `k${i}`, 'no event lost or repeated across reconnects');
    await new Promise((res) => setTimeout(res, 200));
  }
  ac.abort();
});
