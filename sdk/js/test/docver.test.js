// Document versions, conditional writes and merge patch against the real
// engine: collection.getWithEtag, set with ifMatch / ifNoneMatch, delete
// with ifMatch, patch. Runs on the engine's embedded FerretDB, and again on
// the MongoDB of CPODTEST_MONGO_URI when it is set (CI sets it), under app
// ids of its own.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { CpodClient, CpodError } from '@cpod/sdk';
import { allScopes, startServer } from './helpers.js';

/**
 * rejectsWith asserts p rejects with a CpodError of that status and code.
 * @param {Promise<unknown>} p
 * @param {number} status
 * @param {string} code
 */
async function rejectsWith(p, status, code) {
  const e = await p.then((v) => assert.fail(`resolved ${JSON.stringify(v)}; wanted ${status} ${code}`), (err) => err);
  assert.ok(e instanceof CpodError, `not a CpodError: ${e}`);
  assert.equal(e.status, status, e.message);
  assert.equal(e.code, code, e.message);
  return e;
}

/** An entity tag as the ETag header spells it. */
const quoted = /^"[^"]+"$/;

/**
 * engineSuite runs the tests that need the engine against a server started
 * with args.
 * @param {string} name
 * @param {string[]} args
 */
function engineSuite(name, args) {
  describe(name, () => {
    /** @type {Awaited<ReturnType<typeof startServer>>} */
    let srv;
    /** @type {string} */
    let fullToken;
    /** @type {CpodClient} */
    let sdk;
    // App ids of their own: a real MongoDB is shared with other runs.
    const run = randomUUID().slice(0, 8);
    const app = `docver-${run}`;
    /** A client of its own: separate connections, as separate processes would have. */
    const client = () => new CpodClient({ baseUrl: srv.url, token: fullToken });

    before(async () => {
      srv = await startServer(args);
      await srv.registerApp(app, allScopes);
      fullToken = srv.token({ app, user: 'u1', scopes: allScopes });
      sdk = client();
    });

    after(async () => {
      await srv?.stop();
    });

    test('getWithEtag: the value and an ETag that changes on every write; null when missing', async () => {
      const col = sdk.storage.db.collection('versions');
      assert.equal(await col.getWithEtag('missing'), null);
      assert.equal(await col.set('d', { a: 1 }), undefined, 'a plain set resolves to undefined, as before');
      const v1 = await col.getWithEtag('d');
      assert.ok(v1 !== null);
      assert.deepEqual(v1.value, { a: 1 });
      assert.match(v1.etag, quoted);
      assert.equal((await col.getWithEtag('d'))?.etag, v1.etag, 'a read does not change the etag');
      // The same value written again is still a new version.
      await col.set('d', { a: 1 });
      const v2 = await col.getWithEtag('d');
      assert.notEqual(v2?.etag, v1.etag);
      await col.patch('d', { b: 2 });
      const v3 = await col.getWithEtag('d');
      assert.deepEqual(v3?.value, { a: 1, b: 2 });
      assert.ok(v3 && v3.etag !== v2?.etag && v3.etag !== v1.etag);
      // Another tier is another document.
      assert.equal(await sdk.storage.db.collection('versions', { tier: 'user' }).getWithEtag('d'), null);
      assert.equal(await col.delete('d'), undefined, 'a plain delete resolves to undefined, as before');
      assert.equal(await col.getWithEtag('d'), null);
    });

    test('racing ifMatch writers from one version: exactly one wins, the others write nothing', async () => {
      const col = sdk.storage.db.collection('race');
      await col.set('doc', { owner: 'nobody', n: 0 });
      const start = await col.getWithEtag('doc');
      assert.ok(start !== null);
      const writers = Array.from({ length: 12 }, (_, i) => ({ i, col: client().storage.db.collection('race') }));
      const won = await Promise.all(writers.map((w) => w.col.set('doc', { owner: `w${w.i}`, n: 1 }, { ifMatch: start.etag })));
      assert.ok(won.every((w) => typeof w === 'boolean'), `not booleans: ${won}`);
      assert.equal(won.filter(Boolean).length, 1, `winners: ${won}`);
      const winner = won.indexOf(true);
      const now = await col.getWithEtag('doc');
      assert.deepEqual(now?.value, { owner: `w${winner}`, n: 1 });
      assert.notEqual(now?.etag, start.etag);

      // A stale etag no longer writes, deletes or patches anything.
      assert.equal(await col.set('doc', { owner: 'late' }, { ifMatch: start.etag }), false);
      assert.equal(await col.delete('doc', { ifMatch: start.etag }), false);
      assert.equal(await col.patch('doc', { owner: 'late' }, { ifMatch: start.etag }), false);
      assert.deepEqual(await col.get('doc'), { owner: `w${winner}`, n: 1 });

      // A read-modify-write loop from many clients loses no increment.
      const incr = async (/** @type {import('@cpod/sdk').Collection} */ c) => {
        for (let tries = 0; tries < 200; tries++) {
          const cur = await c.getWithEtag('doc');
          assert.ok(cur !== null);
          if (await c.set('doc', { ...cur.value, n: cur.value.n + 1 }, { ifMatch: cur.etag })) return;
        }
        assert.fail('200 tries without a write');
      };
      await Promise.all(writers.slice(0, 6).map((w) => incr(w.col)));
      assert.equal((await col.get('doc')).n, 7);

      // Racing conditional deletes of one version: exactly one removes it.
      const last = await col.getWithEtag('doc');
      assert.ok(last !== null);
      const deleted = await Promise.all(writers.map((w) => w.col.delete('doc', { ifMatch: last.etag })));
      assert.equal(deleted.filter((d) => d === true).length, 1, `deleters: ${deleted}`);
      assert.equal(await col.get('doc'), null);
    });

    test('ifNoneMatch: racing creators, exactly one creates the document; none replaces it later', async () => {
      const col = sdk.storage.db.collection('once');
      const creators = Array.from({ length: 12 }, (_, i) => ({ i, col: client().storage.db.collection('once') }));
      const made = await Promise.all(creators.map((c) => c.col.set('invoice:7', { by: `c${c.i}` }, { ifNoneMatch: '*' })));
      assert.equal(made.filter((m) => m === true).length, 1, `creators: ${made}`);
      assert.ok(made.every((m) => typeof m === 'boolean'));
      const first = { by: `c${made.indexOf(true)}` };
      assert.deepEqual(await col.get('invoice:7'), first);
      assert.equal(await col.set('invoice:7', { by: 'again' }, { ifNoneMatch: '*' }), false);
      assert.deepEqual(await col.get('invoice:7'), first);
      // ifMatch '*': only an existing document.
      assert.equal(await col.set('absent', { x: 1 }, { ifMatch: '*' }), false);
      assert.equal(await col.get('absent'), null);
      assert.equal(await col.set('invoice:7', { by: 'any' }, { ifMatch: '*' }), true);
      assert.equal(await col.delete('invoice:7', { ifMatch: '*' }), true);
      assert.equal(await col.delete('invoice:7', { ifMatch: '*' }), false, 'a conditional delete of a missing document');
      // Deleted, it can be created once more.
      assert.equal(await col.set('invoice:7', { by: 'new' }, { ifNoneMatch: '*' }), true);
      await col.delete('invoice:7');
    });

    test('patch: merges, removes with null, answers the merged value; concurrent patches of different fields all survive', async () => {
      const col = sdk.storage.db.collection('patches');
      await col.set('p', { name: 'Ada', bio: 'x', address: { city: 'Paris', zip: '75001' }, tags: ['a', 'b'] });
      const merged = await col.patch('p', { bio: null, address: { zip: null, country: 'FR' }, tags: ['c'] });
      const want = { name: 'Ada', address: { city: 'Paris', country: 'FR' }, tags: ['c'] };
      assert.deepEqual(merged, want);
      assert.deepEqual(await col.get('p'), want);

      const fields = Array.from({ length: 10 }, (_, i) => `f${i}`);
      const out = await Promise.all(fields.map((f, i) => client().storage.db.collection('patches').patch('p', { [f]: i, counts: { [f]: i } })));
      for (const [i, f] of fields.entries()) assert.equal(out[i][f], i, `patch ${f} answered ${JSON.stringify(out[i])}`);
      const after = await col.get('p');
      assert.equal(after.name, 'Ada');
      assert.deepEqual(after.address, want.address);
      for (const [i, f] of fields.entries()) {
        assert.equal(after[f], i, `${f} lost: ${JSON.stringify(after)}`);
        assert.equal(after.counts[f], i, `counts.${f} lost: ${JSON.stringify(after)}`);
      }

      // With the current etag it applies; with an old one it writes nothing.
      const cur = await col.getWithEtag('p');
      assert.ok(cur !== null);
      const applied = await col.patch('p', { name: 'Grace' }, { ifMatch: cur.etag });
      assert.ok(applied !== false);
      assert.equal(applied.name, 'Grace');
      assert.equal(await col.patch('p', { name: 'Late' }, { ifMatch: cur.etag }), false);
      assert.equal((await col.get('p')).name, 'Grace');
      await col.delete('p');
    });

    test('patch of a missing document: 404 not_found, or false with ifMatch; nothing is created', async () => {
      const col = sdk.storage.db.collection('patches');
      await rejectsWith(col.patch('ghost', { a: 1 }), 404, 'not_found');
      assert.equal(await col.patch('ghost', { a: 1 }, { ifMatch: '*' }), false);
      assert.equal(await col.get('ghost'), null);
    });

    test('412 resolves false; every other failure of a conditional call rejects', async () => {
      const col = sdk.storage.db.collection('guarded');
      await col.set('g', { v: 1 });
      const cur = await col.getWithEtag('g');
      assert.ok(cur !== null);
      const reader = new CpodClient({ baseUrl: srv.url, token: srv.token({ app, scopes: ['storage.private.read'] }) })
        .storage.db.collection('guarded');
      // Not allowed to write: 403, not "the condition did not hold".
      await rejectsWith(reader.set('g', { v: 2 }, { ifMatch: cur.etag }), 403, 'insufficient_scope');
      await rejectsWith(reader.set('g2', { v: 2 }, { ifNoneMatch: '*' }), 403, 'insufficient_scope');
      await rejectsWith(reader.delete('g', { ifMatch: cur.etag }), 403, 'insufficient_scope');
      await rejectsWith(reader.patch('g', { v: 2 }, { ifMatch: cur.etag }), 403, 'insufficient_scope');
      // An If-Match that is not an entity tag is the engine's 400.
      await rejectsWith(col.set('g', { v: 2 }, { ifMatch: 'not-quoted' }), 400, 'invalid_request');
      await rejectsWith(col.delete('g', { ifMatch: 'not-quoted' }), 400, 'invalid_request');
      assert.deepEqual(await col.getWithEtag('g'), cur, 'a refused call wrote something');
      await col.delete('g');
    });
  });
}

engineSuite('document versions (embedded SQLite store)', []);
// MongoDB and Redis go together (the server refuses one without the other).
if (process.env.CPODTEST_MONGO_URI && process.env.CPODTEST_REDIS_URL) {
  engineSuite('document versions (CPODTEST_MONGO_URI)', [
    '-mongo-uri', process.env.CPODTEST_MONGO_URI,
    '-mongo-database', 'cpod_sdk_js_test',
    '-redis-url', process.env.CPODTEST_REDIS_URL,
    '-redis-key-prefix', `cpod-sdk-js-docver-${randomUUID().slice(0, 8)}:`,
  ]);
} else {
  test('document versions (CPODTEST_MONGO_URI)', { skip: 'CPODTEST_MONGO_URI and CPODTEST_REDIS_URL are not both set' }, () => {});
}

describe('document conditions on the wire', () => {
  /**
   * recorder returns a client whose fetch records each request and answers
   * with answer (default 204).
   * @param {(req: {method: string, headers: Headers}) => Response} [answer]
   */
  function recorder(answer) {
    /** @type {{method: string, url: string, headers: Headers, body: string}[]} */
    const sent = [];
    const sdk = new CpodClient({
      baseUrl: 'http://engine.test',
      token: 'tok',
      fetch: async (input, init) => {
        const req = new Request(input, init);
        const r = { method: req.method, url: req.url, headers: req.headers, body: await req.text() };
        sent.push(r);
        return answer ? answer(r) : new Response(null, { status: 204 });
      },
    });
    return { col: sdk.storage.db.collection('c', { tier: 'user' }), sent };
  }

  test('the headers and bodies each call sends', async () => {
    const etag = '"0123456789abcdef0000018f2d9c3b00"';
    const item = (/** @type {unknown} */ value) => new Response(JSON.stringify({ key: 'k', value }), {
      status: 200,
      headers: { 'Content-Type': 'application/json', ETag: etag },
    });
    const { col, sent } = recorder((r) => (r.method === 'PATCH' || r.method === 'GET' ? item({ a: 1, b: 2 }) : new Response(null, { status: 204 })));
    assert.equal(await col.set('k', { a: 1 }, { ifMatch: etag }), true);
    assert.equal(await col.set('k', { a: 1 }, { ifNoneMatch: '*' }), true);
    assert.equal(await col.set('k', { a: 1 }), undefined);
    assert.equal(await col.delete('k', { ifMatch: '*' }), true);
    assert.equal(await col.delete('k'), undefined);
    assert.deepEqual(await col.patch('k', { b: 2 }), { a: 1, b: 2 });
    assert.deepEqual(await col.patch('k', { b: 2 }, { ifMatch: etag }), { a: 1, b: 2 });
    assert.deepEqual(await col.getWithEtag('k/1'), { value: { a: 1, b: 2 }, etag });
    const seen = sent.map((r) => [r.method, r.url, r.headers.get('If-Match'), r.headers.get('If-None-Match'), r.headers.get('Content-Type'), r.body]);
    const u = 'http://engine.test/v1/storage/db/c/k?tier=user';
    assert.deepEqual(seen, [
      ['PUT', u, etag, null, 'application/json', '{"a":1}'],
      ['PUT', u, null, '*', 'application/json', '{"a":1}'],
      ['PUT', u, null, null, 'application/json', '{"a":1}'],
      ['DELETE', u, '*', null, null, ''],
      ['DELETE', u, null, null, null, ''],
      ['PATCH', u, null, null, 'application/merge-patch+json', '{"b":2}'],
      ['PATCH', u, etag, null, 'application/merge-patch+json', '{"b":2}'],
      ['GET', 'http://engine.test/v1/storage/db/c/k%2F1?tier=user', null, null, null, ''],
    ]);
  });

  test('conditions that cannot be sent are refused before sending, as CpodError 0 invalid_request', async () => {
    const { col, sent } = recorder();
    /** @type {any} */
    const c = col;
    let unset;
    const refused = [
      // An etag never read (a missing document) must not make a write unconditional.
      c.set('k', 1, { ifMatch: unset }),
      c.set('k', 1, { ifMatch: null }),
      c.delete('k', { ifMatch: undefined }),
      c.patch('k', { a: 1 }, { ifMatch: undefined }),
      c.set('k', 1, { ifNoneMatch: undefined }),
      c.set('k', 1, { ifMatch: 42 }),
      c.set('k', 1, { ifMatch: '' }),
      c.set('k', 1, { ifMatch: '"a"\r\nX-Evil: 1' }),
      c.set('k', 1, { ifNoneMatch: '"abc"' }),
      c.set('k', 1, { ifNoneMatch: true }),
      c.set('k', 1, { ifMatch: '*', ifNoneMatch: '*' }),
      c.delete('k', { ifNoneMatch: '*' }),
      c.patch('k', { a: 1 }, { ifNoneMatch: '*' }),
      // A merge patch is an object of fields: a whole value goes through set.
      c.patch('k', 42),
      c.patch('k', null),
      c.patch('k', [1]),
      c.patch('k', 'text'),
      c.patch('k', new Date(0)),
      c.patch('k', undefined),
    ];
    for (const [i, p] of refused.entries()) {
      const e = await rejectsWith(p, 0, 'invalid_request').catch((err) => assert.fail(`call ${i}: ${err.message}`));
      assert.ok(e.message.length > 0);
    }
    assert.equal(sent.length, 0, `sent: ${sent.map((r) => r.method + ' ' + JSON.stringify([...r.headers]))}`);
  });

  test('an answer without a readable ETag rejects rather than give an etag of null', async () => {
    const { col } = recorder(() => new Response('{"key":"k","value":1}', { status: 200, headers: { 'Content-Type': 'application/json' } }));
    const e = await col.getWithEtag('k').then(() => assert.fail('resolved'), (err) => err);
    assert.ok(e instanceof CpodError);
    assert.match(e.message, /ETag/);
  });

  test('a 412 of an unconditional call is not turned into false', async () => {
    const { col } = recorder(() => new Response('{"error":"conflict","message":"x"}', { status: 412 }));
    await rejectsWith(col.set('k', 1), 412, 'conflict');
    await rejectsWith(col.delete('k'), 412, 'conflict');
    await rejectsWith(col.patch('k', { a: 1 }), 412, 'conflict');
  });
});
