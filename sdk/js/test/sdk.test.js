// @cpod/sdk against the real engine: errors (401, 403 invalid_scope,
// insufficient_scope, user_required, 404 -> null, 409 not_integer), path
// and key encoding, streaming, pagination, tiers, token refresh.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CpodClient, CpodError } from '@cpod/sdk';
import { allScopes, startServer } from './helpers.js';

/** @type {Awaited<ReturnType<typeof startServer>>} */
let srv;
/** @type {CpodClient} */
let sdk;
/** @type {string} */
let fullToken;

const privateScopes = ['storage.private.read', 'storage.private.write'];

before(async () => {
  srv = await startServer();
  await srv.registerApp('app-all', allScopes);
  await srv.registerApp('app-private', privateScopes);
  await srv.registerApp('app-other', allScopes);
  fullToken = srv.token({ app: 'app-all', user: 'u1', scopes: allScopes });
  sdk = new CpodClient({ baseUrl: srv.url, token: fullToken });
});

after(async () => {
  await srv?.stop();
});

/** client returns a client of the test server with token. */
const client = (/** @type {string | undefined} */ token) => new CpodClient({ baseUrl: srv.url, token });
const text = async (/** @type {ReadableStream} */ s) => new Response(s).text();
const sha = (/** @type {Uint8Array} */ b) => createHash('sha256').update(b).digest('hex');

/**
 * rejectsWith asserts p rejects with a CpodError of that status and code,
 * carrying the engine's request id.
 * @param {Promise<unknown>} p
 * @param {number} status
 * @param {string} code
 */
async function rejectsWith(p, status, code) {
  const e = await p.then(() => assert.fail(`resolved; wanted ${status} ${code}`), (err) => err);
  assert.ok(e instanceof CpodError, `not a CpodError: ${e}`);
  assert.equal(e.status, status, e.message);
  assert.equal(e.code, code, e.message);
  assert.match(String(e.requestId), /^\S{8,64}$/, 'X-Request-Id');
  return e;
}

describe('errors', () => {
  test('401 invalid_token: no token, a malformed one, an unregistered app', async () => {
    const none = await rejectsWith(client(undefined).storage.kv.get('k'), 401, 'invalid_token');
    assert.match(none.message, /^cpod storage: 401 invalid_token/);
    await rejectsWith(client('not-a-jwt').storage.files.list(''), 401, 'invalid_token');
    const ghost = srv.token({ app: 'app-ghost', user: 'u1', scopes: allScopes });
    await rejectsWith(client(ghost).storage.db.collection('c').get('k'), 401, 'invalid_token');
    // HEAD answers have no body: the code comes from WWW-Authenticate, and
    // exists/ttl do not mistake a 401 for a missing key.
    await rejectsWith(client('not-a-jwt').storage.kv.exists('k'), 401, 'invalid_token');
    await rejectsWith(client('not-a-jwt').storage.kv.ttl('k'), 401, 'invalid_token');
  });

  test('403 invalid_scope: a tier the app did not declare, whatever the token says', async () => {
    const tok = srv.token({ app: 'app-private', user: 'u1', scopes: allScopes });
    const c = client(tok);
    await rejectsWith(c.storage.files.write('brand/logo.svg', '<svg/>', { tier: 'shared' }), 403, 'invalid_scope');
    await rejectsWith(c.storage.db.collection('p', { tier: 'user' }).set('k', 1), 403, 'invalid_scope');
    await rejectsWith(c.storage.kv.withTier('shared').exists('k'), 403, 'invalid_scope');
    // Its declared tier works.
    await c.storage.kv.set('k', 'v');
    assert.equal(await c.storage.kv.get('k'), 'v');
  });

  test('403 insufficient_scope: declared by the app, not granted to the token', async () => {
    const c = client(srv.token({ app: 'app-all', user: 'u1', scopes: ['storage.private.read'] }));
    await rejectsWith(c.storage.files.write('a.txt', 'x'), 403, 'insufficient_scope');
    await rejectsWith(c.storage.kv.incr('n'), 403, 'insufficient_scope');
    await rejectsWith(c.storage.db.collection('c').batch([{ op: 'delete', key: 'k' }]), 403, 'insufficient_scope');
    await rejectsWith(c.storage.files.list('', { tier: 'user' }), 403, 'insufficient_scope');
    assert.equal(await c.storage.kv.get('nothing'), null); // reading is granted
  });

  test('403 user_required: the user tier with a client-credentials token', async () => {
    const c = client(srv.token({ app: 'app-all', scopes: allScopes }));
    await rejectsWith(c.storage.kv.withTier('user').set('k', 'v'), 403, 'user_required');
    await rejectsWith(c.storage.files.read('a', { tier: 'user' }), 403, 'user_required');
  });

  test('404: get, kv.get and kv.ttl answer null, exists false; files reject not_found', async () => {
    assert.equal(await sdk.storage.db.collection('prefs').get('does-not-exist'), null);
    assert.equal(await sdk.storage.kv.get('does-not-exist'), null);
    assert.equal(await sdk.storage.kv.ttl('does-not-exist'), null);
    assert.equal(await sdk.storage.kv.exists('does-not-exist'), false);
    await rejectsWith(sdk.storage.files.read('does/not/exist.txt'), 404, 'not_found');
    await rejectsWith(sdk.storage.files.url('does/not/exist.txt'), 404, 'not_found');
    // Deleting what is not there is fine.
    await sdk.storage.files.delete('does/not/exist.txt');
    await sdk.storage.db.collection('prefs').delete('does-not-exist');
    await sdk.storage.kv.del('does-not-exist');
  });

  test('409 not_integer: incr on text, and on int64 overflow', async () => {
    await sdk.storage.kv.set('name', 'alice');
    const e = await rejectsWith(sdk.storage.kv.incr('name'), 409, 'not_integer');
    assert.equal(e.retryAfter, null);
    assert.equal(await sdk.storage.kv.get('name'), 'alice');
    await sdk.storage.kv.set('max', '9223372036854775807');
    await rejectsWith(sdk.storage.kv.incr('max', 1n), 409, 'not_integer');
  });

  test('400 from the engine: a bad tier, a bad cursor, a bad collection name', async () => {
    // @ts-expect-error not a tier
    await rejectsWith(sdk.storage.kv.withTier('public').get('k'), 400, 'invalid_request');
    await rejectsWith(sdk.storage.db.collection('c').query({ cursor: 'forged' }), 400, 'invalid_cursor');
    await rejectsWith(sdk.storage.db.collection('no spaces').get('k'), 400, 'invalid_request');
  });

  test('503 carries retryAfter; a proxy page keeps its status with no code', async () => {
    /** @type {typeof fetch} */
    const unavailable = async () => new Response('{"error":"backend_unavailable","message":"try later"}', {
      status: 503, headers: { 'Retry-After': '7', 'X-Request-Id': 'req-503-abc' },
    });
    const c = new CpodClient({ baseUrl: 'http://cpod.invalid', token: 't', fetch: unavailable });
    const e = await c.storage.kv.get('k').catch((err) => err);
    assert.ok(e instanceof CpodError);
    assert.deepEqual([e.status, e.code, e.retryAfter, e.requestId, e.detail], [503, 'backend_unavailable', 7, 'req-503-abc', 'try later']);
    assert.equal(e.name, 'CpodError');
    // HEAD: no body, the status says it.
    const h = await c.storage.kv.exists('k').catch((err) => err);
    assert.deepEqual([h.status, h.code, h.retryAfter], [503, 'backend_unavailable', 7]);

    /** @type {typeof fetch} */
    const proxy = async () => new Response('<html>Bad Gateway</html>', { status: 502 });
    const p = await new CpodClient({ baseUrl: 'http://cpod.invalid', fetch: proxy }).storage.db.collection('c').get('k').catch((err) => err);
    assert.deepEqual([p.status, p.code, p.detail], [502, '', '<html>Bad Gateway</html>']);
    // A 404 without the contract's body (a wrong base URL) is not "missing".
    /** @type {typeof fetch} */
    const wrongBase = async () => new Response('404 page not found', { status: 404 });
    const w = await new CpodClient({ baseUrl: 'http://cpod.invalid', fetch: wrongBase }).storage.kv.get('k').catch((err) => err);
    assert.ok(w instanceof CpodError && w.status === 404 && w.code === '');
    // Nor, on HEAD, a bodyless 404 without the engine's Cpod-Error: not_found.
    for (const c of [new CpodClient({ baseUrl: 'http://cpod.invalid/api', fetch: wrongBase })]) {
      for (const [what, call] of /** @type {const} */ ([
        ['kv.exists', () => c.storage.kv.exists('k')],
        ['kv.ttl', () => c.storage.kv.ttl('k')],
        ['db exists', () => c.storage.db.collection('c').exists('k')],
      ])) {
        const e = await call().then((v) => assert.fail(`${what} resolved ${v}`), (err) => err);
        assert.ok(e instanceof CpodError && e.status === 404 && e.code === '', `${what}: ${e}`);
        assert.match(e.message, /HEAD http:\/\/cpod\.invalid\/api\/v1\/storage\/\S+: no such endpoint: is the client's baseUrl right/, what);
      }
    }
  });

  test('a wrong baseUrl rejects with 404 unknown_endpoint naming the URL; only not_found is missing', async () => {
    await sdk.storage.kv.set('here', 'v');
    await sdk.storage.db.collection('prefs').set('here', 1);
    for (const suffix of ['/v1', '/api', '/v1/storage']) {
      const c = new CpodClient({ baseUrl: srv.url + suffix, token: fullToken });
      const base = srv.url + suffix;
      for (const [what, path, call] of /** @type {const} */ ([
        ['kv.get', '/v1/storage/kv/here', () => c.storage.kv.get('here')],
        ['kv.exists', '/v1/storage/kv/here', () => c.storage.kv.exists('here')],
        ['kv.ttl', '/v1/storage/kv/here', () => c.storage.kv.ttl('here')],
        ['db get', '/v1/storage/db/prefs/here', () => c.storage.db.collection('prefs').get('here')],
        ['db exists', '/v1/storage/db/prefs/here', () => c.storage.db.collection('prefs').exists('here')],
        ['db getWithEtag', '/v1/storage/db/prefs/here', () => c.storage.db.collection('prefs').getWithEtag('here')],
        ['files.read', '/v1/storage/files/a.txt', () => c.storage.files.read('a.txt')],
      ])) {
        const e = await rejectsWith(call(), 404, 'unknown_endpoint');
        assert.ok(e.message.includes(base + path), `${suffix} ${what}: ${e.message} does not name ${base + path}`);
        assert.ok(!e.message.includes('?tier'), `${what}: the message carries the query`);
      }
    }
  });
});

describe('db exists', () => {
  test('exists is a HEAD: true for a stored document, false for a missing one, per tier', async () => {
    const prefs = sdk.storage.db.collection('exists-prefs');
    await prefs.set('theme', { mode: 'dark' });
    assert.equal(await prefs.exists('theme'), true);
    assert.equal(await prefs.exists('nothing'), false);
    assert.equal(await sdk.storage.db.collection('exists-prefs', { tier: 'shared' }).exists('theme'), false);
    await prefs.delete('theme');
    assert.equal(await prefs.exists('theme'), false);
    // It needs the read scope, and a HEAD error keeps its code.
    const c = client(srv.token({ app: 'app-all', user: 'u1', scopes: ['storage.private.write'] }));
    await rejectsWith(c.storage.db.collection('exists-prefs').exists('theme'), 403, 'insufficient_scope');
    // The method on the wire.
    /** @type {string[]} */
    const methods = [];
    /** @type {typeof fetch} */
    const f = async (input, init) => {
      methods.push(String(init?.method));
      return new Response(null, { status: 200, headers: { ETag: '"1"' } });
    };
    assert.equal(await new CpodClient({ baseUrl: 'http://cpod.test', token: 't', fetch: f }).storage.db.collection('c').exists('k'), true);
    assert.deepEqual(methods, ['HEAD']);
  });
});

describe('encoding', () => {
  // Produced by Go's url.PathEscape, which the Go client (client/) uses:
  // each segment is percent-encoded once, byte for byte the same.
  const goPathEscape = [
    ['a b', 'a%20b'], ['a/b', 'a%2Fb'], ['100%', '100%25'], ['é', '%C3%A9'], ['q?x#y', 'q%3Fx%23y'],
    ['$&+:=@', '$&+:=@'], ["!*'()", '%21%2A%27%28%29'], [';,', '%3B%2C'], ['~-._', '~-._'],
    ['[]{}|^`"<>\\', '%5B%5D%7B%7D%7C%5E%60%22%3C%3E%5C'], ['\u00a0', '%C2%A0'], ['😀', '%F0%9F%98%80'], ['%2F', '%252F'],
  ];

  /** recorder is a client whose fetch records the URLs and answers 204. */
  function recorder() {
    /** @type {string[]} */
    const urls = [];
    /** @type {typeof fetch} */
    const f = async (input) => {
      urls.push(String(input));
      return new Response(null, { status: 204 });
    };
    return { urls, c: new CpodClient({ baseUrl: 'http://cpod.test/prefix/', token: 't', fetch: f }) };
  }

  test('kv keys, document keys and collection names are one segment, escaped as Go does', async () => {
    const { urls, c } = recorder();
    for (const [raw, want] of goPathEscape) {
      await c.storage.kv.del(raw);
      await c.storage.db.collection(raw).delete(raw);
      const u = new URL(urls.at(-2) ?? '');
      assert.equal(u.pathname, '/prefix/v1/storage/kv/' + want, `kv key ${raw}`);
      assert.equal(new URL(urls.at(-1) ?? '').pathname, `/prefix/v1/storage/db/${want}/${want}`, `doc key ${raw}`);
    }
  });

  test('file paths keep their slashes, each segment escaped once', async () => {
    const { urls, c } = recorder();
    await c.storage.files.delete('dir one/ü/100%/a?b#c.txt', { tier: 'shared' });
    const u = new URL(urls[0]);
    assert.equal(u.pathname, '/prefix/v1/storage/files/dir%20one/%C3%BC/100%25/a%3Fb%23c.txt');
    assert.equal(u.search, '?tier=shared');
    assert.equal(u.hash, '');
  });

  test('what cannot be sent faithfully is refused before sending (status 0)', async () => {
    const { urls, c } = recorder();
    const refused = [
      c.storage.files.write('', 'x'), c.storage.files.read('/etc/passwd'), c.storage.files.delete('a//b'),
      c.storage.files.url('a/'), c.storage.files.read('a/../b'), c.storage.files.write('./a', 'x'),
      c.storage.kv.get(''), c.storage.kv.set('..', 'x'), c.storage.kv.exists('.'),
      c.storage.db.collection('c').get('..'), c.storage.db.collection('').get('k'),
      c.storage.kv.get('\ud800'), // a lone surrogate has no UTF-8
      // @ts-expect-error not a string
      c.storage.kv.get(42),
      c.storage.kv.set('k', undefined), c.storage.kv.incr('k', 1.5), c.storage.kv.set('k', 'v', { ttl: -1 }),
      c.storage.db.collection('c').set('k', undefined), c.storage.files.read('a', { offset: -1 }),
      // @ts-expect-error not file data
      c.storage.files.write('a', 42),
    ];
    for (const p of refused) {
      const e = await p.then(() => assert.fail('resolved'), (err) => err);
      assert.ok(e instanceof CpodError, String(e));
      assert.equal(e.status, 0);
      assert.equal(e.code, 'invalid_request');
    }
    assert.deepEqual(urls, [], 'nothing was sent');
  });

  test('odd names round-trip through the engine unchanged', async () => {
    // (The engine refuses a file path that holds a percent-escape such as
    // %2F once decoded: tested in the Go suite.)
    const paths = ['dir with space/ü é.txt', "q?x#y%z+&=@:;,!*'()[]$.txt", '100%/a', 'a/..b/c..'];
    for (const [i, p] of paths.entries()) {
      const r = await sdk.storage.files.write('odd/' + p, `content ${i}`, { contentType: 'text/plain' });
      assert.equal(r.key, 'odd/' + p);
      assert.equal(await text(await sdk.storage.files.read('odd/' + p)), `content ${i}`);
    }
    const listed = (await sdk.storage.files.list('odd/')).items.map((e) => e.key).sort();
    assert.deepEqual(listed, paths.map((p) => 'odd/' + p).sort());

    // In kv, "a/b" and "a%2Fb" are two keys, and "x/../y" is a key like any.
    const kv = sdk.storage.kv;
    await kv.set('a/b', 'slash');
    await kv.set('a%2Fb', 'percent');
    await kv.set('x/../y', 'dots');
    assert.deepEqual([await kv.get('a/b'), await kv.get('a%2Fb'), await kv.get('x/../y'), await kv.get('y')], ['slash', 'percent', 'dots', null]);

    const col = sdk.storage.db.collection('odd.names-1');
    await col.set('k?#/%', { v: 1 });
    assert.deepEqual(await col.get('k?#/%'), { v: 1 });
    assert.equal(await col.get('k'), null);
  });
});

describe('files', () => {
  test('streams: a ReadableStream and a Node read stream, a few MiB each', async () => {
    const size = 3 << 20;
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i++) bytes[i] = (i * 7 + (i >> 11)) & 0xff;
    let sent = 0;
    const stream = new ReadableStream({
      pull(c) {
        if (sent >= size) return c.close();
        const n = Math.min(64 << 10, size - sent);
        c.enqueue(bytes.slice(sent, sent + n));
        sent += n;
      },
    });
    const r = await sdk.storage.files.write('big/stream.bin', stream);
    assert.equal(r.size, size);
    assert.equal(r.contentType, 'application/octet-stream');
    const back = new Uint8Array(await new Response(await sdk.storage.files.read('big/stream.bin')).arrayBuffer());
    assert.equal(sha(back), sha(bytes));

    const dir = mkdtempSync(join(tmpdir(), 'cpod-sdk-file-'));
    try {
      writeFileSync(join(dir, 'f.bin'), bytes);
      const r2 = await sdk.storage.files.write('big/fs.bin', createReadStream(join(dir, 'f.bin')), { contentType: 'application/x-test' });
      assert.equal(r2.size, size);
      assert.equal(r2.contentType, 'application/x-test');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    // A byte range of it.
    const part = new Uint8Array(await new Response(await sdk.storage.files.read('big/fs.bin', { offset: 1000, length: 10 })).arrayBuffer());
    assert.deepEqual([...part], [...bytes.subarray(1000, 1010)]);
    const tail = new Uint8Array(await new Response(await sdk.storage.files.read('big/fs.bin', { offset: size - 3 })).arrayBuffer());
    assert.deepEqual([...tail], [...bytes.subarray(size - 3)]);
  });

  test('data kinds: string, Uint8Array view, ArrayBuffer, Blob (its type), empty', async () => {
    const backing = new TextEncoder().encode('xxhelloxx');
    const cases = /** @type {const} */ ([
      ['s.txt', 'héllo', 'héllo', 'application/octet-stream'],
      ['view.txt', backing.subarray(2, 7), 'hello', 'application/octet-stream'],
      ['ab.txt', backing.buffer.slice(2, 7), 'hello', 'application/octet-stream'],
      ['blob.txt', new Blob(['hello'], { type: 'text/plain' }), 'hello', 'text/plain'],
      ['empty.txt', '', '', 'application/octet-stream'],
    ]);
    for (const [path, data, want, type] of cases) {
      const r = await sdk.storage.files.write('kinds/' + path, data);
      assert.equal(r.contentType, type, path);
      assert.equal(await text(await sdk.storage.files.read('kinds/' + path)), want, path);
    }
  });

  test('list pages with limit and cursor; url works without a token', async () => {
    for (let i = 0; i < 5; i++) await sdk.storage.files.write(`pages/f${i}.txt`, `f${i}`);
    const seen = [];
    let cursor = null;
    let pages = 0;
    do {
      const page = await sdk.storage.files.list('pages/', { limit: 2, cursor });
      assert.ok(page.items.length <= 2);
      seen.push(...page.items.map((e) => e.key));
      cursor = page.nextCursor;
      pages++;
    } while (cursor);
    assert.equal(pages, 3);
    assert.deepEqual(seen, ['pages/f0.txt', 'pages/f1.txt', 'pages/f2.txt', 'pages/f3.txt', 'pages/f4.txt']);

    await sdk.storage.files.write('me.txt', 'mine', { tier: 'user' });
    const url = await sdk.storage.files.url('me.txt', { tier: 'user', expiresIn: 60 });
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'mine');
    // Changed, it is refused.
    const bad = await fetch(url.replace(/.$/, (ch) => (ch === 'A' ? 'B' : 'A')));
    assert.equal(bad.status, 403);
  });
});

describe('documents and kv', () => {
  test('query: sort fields in the order given, cursor paging, batch with a failed op', async () => {
    const col = sdk.storage.db.collection('people');
    const people = [['p1', 'b', 1], ['p2', 'a', 2], ['p3', 'b', 3], ['p4', 'a', 1]];
    const r = await col.batch(people.map(([key, team, n]) => ({ op: 'set', key, value: { team, n } })));
    assert.deepEqual([r.succeeded, r.failed], [4, 0]);
    const byTeamThenN = await col.query({ sort: [['team', 1], ['n', -1]] });
    assert.deepEqual(byTeamThenN.items.map((i) => i.key), ['p2', 'p4', 'p3', 'p1']);
    const byNThenTeam = await col.query({ sort: { n: 1, team: -1 } });
    assert.deepEqual(byNThenTeam.items.map((i) => i.key), ['p1', 'p4', 'p2', 'p3']);
    const p1 = await col.query({ filter: { team: 'b' }, limit: 1 });
    assert.deepEqual(p1.items, [{ key: 'p1', value: { team: 'b', n: 1 } }]);
    const p2 = await col.query({ cursor: p1.nextCursor });
    assert.deepEqual(p2.items.map((i) => i.key), ['p3']);

    // One op failing does not stop the others.
    let deep = /** @type {any} */ ('x');
    for (let i = 0; i < 40; i++) deep = [deep];
    const b = await col.batch([{ op: 'set', key: 'ok', value: 1 }, { op: 'set', key: 'deep', value: deep }, { op: 'delete', key: 'p1' }]);
    assert.deepEqual([b.succeeded, b.failed], [2, 1]);
    assert.equal(b.results[1].ok, false);
    assert.equal(typeof b.results[1].error, 'string');
    assert.equal(await col.get('p1'), null);
  });

  test('query and count with ranges, sets and not-equal; operators the engine refuses', async () => {
    const col = sdk.storage.db.collection('ranges');
    const docs = [['r1', 'pro', '2025-01-01'], ['r2', 'team', '2025-01-15'], ['r3', 'free', '2025-02-01'], ['r4', null, 20250105]];
    await col.batch(docs.map(([key, plan, at]) => ({ op: 'set', key, value: { plan, at } })));
    const keys = async (/** @type {import('../index.js').Filter} */ filter) => {
      const out = [];
      let q = await col.query({ filter, sort: { at: 1 }, limit: 1 });
      for (;;) {
        out.push(...q.items.map((i) => i.key));
        if (!q.nextCursor) return out;
        q = await col.query({ cursor: q.nextCursor, limit: 1 });
      }
    };
    assert.deepEqual(await keys({ at: { gte: '2025-01-01', lt: '2025-02-01' } }), ['r1', 'r2']);
    assert.deepEqual(await keys({ at: { gt: 0 } }), ['r4']);
    assert.deepEqual(await keys({ plan: { in: ['pro', 'team', null] } }), ['r4', 'r1', 'r2']);
    assert.deepEqual(await keys({ plan: { ne: 'pro' } }), ['r4', 'r2', 'r3']);
    assert.equal(await col.count({ plan: { ne: null } }), 3);
    assert.equal(await col.count({ at: { lt: 'z' }, plan: { in: ['free', 'team'] } }), 2);
    assert.equal(await col.count(), 4);
    await rejectsWith(col.count(/** @type {any} */ ({ plan: { $ne: '' } })), 400, 'invalid_request');
    await rejectsWith(col.query({ filter: /** @type {any} */ ({ plan: { in: ['a'], ne: 'b' } }) }), 400, 'invalid_request');
  });

  test('kv: ttl, no ttl, values as strings, tiers, bigint counters', async () => {
    const kv = sdk.storage.kv;
    await kv.set('t', 'v', { ttl: 0.2 }); // rounded up to 1 s, never "none"
    const t = await kv.ttl('t');
    assert.ok(t !== null && t >= 0 && t <= 1, `ttl ${t}`);
    await kv.set('forever', 42);
    assert.equal(await kv.ttl('forever'), -1);
    assert.equal(await kv.get('forever'), '42');
    await kv.set('obj', { b: [1, 'x'], a: null });
    assert.equal(await kv.get('obj'), '{"b":[1,"x"],"a":null}');
    await kv.withTier('user').set('forever', 'user tier');
    assert.equal(await kv.get('forever'), '42');
    assert.equal(await kv.withTier('user').get('forever'), 'user tier');
    // Another app of the same user sees the user tier, not the private one.
    const other = client(srv.token({ app: 'app-other', user: 'u1', scopes: allScopes }));
    assert.equal(await other.storage.kv.withTier('user').get('forever'), 'user tier');
    assert.equal(await other.storage.kv.get('forever'), null);

    await kv.set('big', '9007199254740993'); // 2^53 + 1
    assert.equal(await kv.incr('big', 1n), 9007199254740994n);
    await assert.rejects(kv.incr('big'), RangeError);
    assert.equal(await kv.incr('fresh', -3), -3);
  });
});

describe('client', () => {
  test('a token function is asked before every request, and may be async', async () => {
    const tokens = ['not-a-jwt', fullToken, fullToken];
    let calls = 0;
    const c = new CpodClient({ baseUrl: srv.url + '/', token: async () => tokens[calls++] });
    await rejectsWith(c.storage.kv.get('k'), 401, 'invalid_token');
    await c.storage.kv.set('refreshed', 'yes');
    assert.equal(await c.storage.kv.get('refreshed'), 'yes');
    assert.equal(calls, 3);
  });

  test('fromEnv and the constructor check what they are given', () => {
    const saved = { u: process.env.CPOD_API_URL, t: process.env.CPOD_TOKEN };
    try {
      delete process.env.CPOD_API_URL;
      assert.throws(() => CpodClient.fromEnv(), /CPOD_API_URL is not set/);
      process.env.CPOD_API_URL = 'https://api.example.com/storage-api/';
      // Without a token every call would be a 401: fromEnv says so at once.
      delete process.env.CPOD_TOKEN;
      assert.throws(() => CpodClient.fromEnv(), { name: 'TypeError', message: /CPOD_TOKEN is not set/ });
      process.env.CPOD_TOKEN = '';
      assert.throws(() => CpodClient.fromEnv(), { name: 'TypeError', message: /CPOD_TOKEN is not set/ });
      // A token given as an option stands for CPOD_TOKEN.
      assert.equal(CpodClient.fromEnv({ token: async () => 'fresh' }).baseUrl, 'https://api.example.com/storage-api');
      process.env.CPOD_TOKEN = 'tok';
      assert.equal(CpodClient.fromEnv().baseUrl, 'https://api.example.com/storage-api');
    } finally {
      for (const [k, v] of [['CPOD_API_URL', saved.u], ['CPOD_TOKEN', saved.t]]) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
    for (const baseUrl of ['', 'ftp://x', 'http://x/?q=1', 'http://u:p@x', 'not a url']) {
      assert.throws(() => new CpodClient({ baseUrl }), TypeError, baseUrl);
    }
    // @ts-expect-error a token is a string or a function
    assert.throws(() => new CpodClient({ baseUrl: 'http://x', token: 42 }), TypeError);
  });
});

describe('package', () => {
  test('ESM with types and no runtime dependencies; the sources import nothing outside src/', async () => {
    const { readFileSync, readdirSync } = await import('node:fs');
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    assert.equal(pkg.name, '@cpod/sdk');
    assert.equal(pkg.type, 'module');
    assert.equal(pkg.dependencies, undefined);
    assert.equal(pkg.peerDependencies, undefined);
    assert.equal(pkg.exports['.'].types, './index.d.ts');
    const src = new URL('../src/', import.meta.url);
    for (const f of readdirSync(src)) {
      const code = readFileSync(new URL(f, src), 'utf8');
      for (const [, spec] of code.matchAll(/^\s*(?:import|export)\s[^'"]*from\s+['"]([^'"]+)['"]/gm)) {
        assert.match(spec, /^\.\/[\w-]+\.js$/, `${f} imports ${spec}`);
      }
    }
  });
});
