// Usage and quotas as the SDK surfaces them: sdk.storage.usage({tier})
// reports the bytes of the values and the count of each primitive for the
// caller's location; a write over the tenant's quota (the server's
// -default-quota, or the tenant's own set through the admin API) rejects
// with a CpodError of status 507 and code 'quota_exceeded', no retryAfter,
// and stores nothing.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { CpodClient, CpodError, uploadToSignedUrl } from '@cpod/sdk';
import { allScopes, startServer } from './helpers.js';

test('usage: GET /v1/storage/usage with the tier in the query, answered as sent', async () => {
  /** @type {string[]} */
  const urls = [];
  /** @type {(string | null)[]} */
  const accepts = [];
  const answer = { files: { bytes: 17, count: 1 }, documents: { bytes: 40, count: 2 }, kv: { bytes: 5, count: 3 } };
  /** @type {typeof fetch} */
  const f = async (input, init) => {
    urls.push(String(input));
    accepts.push(new Headers(init?.headers).get('Accept'));
    return new Response(JSON.stringify(answer), { status: 200, headers: { 'Content-Type': 'application/json' } });
  };
  const c = new CpodClient({ baseUrl: 'http://cpod.test/prefix/', token: 't', fetch: f });
  assert.deepEqual(await c.storage.usage(), answer);
  assert.deepEqual(await c.storage.usage({ tier: 'user' }), answer);
  assert.deepEqual(await c.storage.usage({ tier: 'shared', signal: AbortSignal.timeout(5000) }), answer);
  assert.deepEqual(urls, [
    'http://cpod.test/prefix/v1/storage/usage',
    'http://cpod.test/prefix/v1/storage/usage?tier=user',
    'http://cpod.test/prefix/v1/storage/usage?tier=shared',
  ]);
  assert.deepEqual(accepts, ['application/json', 'application/json', 'application/json']);
});

test('507 quota_exceeded and 507 insufficient_storage differ by code only', async () => {
  for (const code of ['quota_exceeded', 'insufficient_storage']) {
    /** @type {typeof fetch} */
    const f = async () => new Response(JSON.stringify({ error: code, message: 'because' }), { status: 507 });
    const c = new CpodClient({ baseUrl: 'http://cpod.test', token: 't', fetch: f });
    const e = await c.storage.kv.set('k', 'v').then((v) => assert.fail(`resolved ${v}`), (err) => err);
    assert.ok(e instanceof CpodError);
    assert.deepEqual([e.status, e.code, e.detail, e.retryAfter], [507, code, 'because', null]);
  }
});

describe('against the engine', () => {
  /** @type {Awaited<ReturnType<typeof startServer>>} */
  let srv;

  before(async () => {
    // Every tenant without a quota of its own: 2 kv keys, 16 bytes of files.
    srv = await startServer(['-default-quota', 'kv.count=2,files.bytes=16']);
    await srv.registerApp('app-u', allScopes);
    await srv.registerApp('app-v', allScopes);
  });

  after(async () => {
    await srv?.stop();
  });

  /**
   * client returns an SDK client of app (default app-u) for a user of a tenant.
   * @param {string} tenant
   * @param {string} [user]
   * @param {string} [app]
   */
  function client(tenant, user = 'u1', app = 'app-u') {
    return new CpodClient({ baseUrl: srv.url, token: srv.token({ tenant, app, user, scopes: allScopes }) });
  }

  /**
   * admin sends an admin API call and returns its JSON answer, which must be 200.
   * @param {string} method
   * @param {string} path
   * @param {unknown} [body]
   */
  async function admin(method, path, body) {
    /** @type {Record<string, string>} */
    const headers = { Authorization: 'Bearer ' + srv.adminToken };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const res = await fetch(srv.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const text = await res.text();
    assert.equal(res.status, 200, `${method} ${path}: ${text}`);
    return JSON.parse(text);
  }

  /**
   * overQuota asserts p rejects with 507 quota_exceeded and no retryAfter.
   * @param {Promise<unknown>} p
   */
  async function overQuota(p) {
    const e = await p.then((v) => assert.fail(`resolved ${v}; wanted 507 quota_exceeded`), (err) => err);
    assert.ok(e instanceof CpodError, `not a CpodError: ${e}`);
    assert.equal(e.status, 507, e.message);
    assert.equal(e.code, 'quota_exceeded', e.message);
    assert.equal(e.retryAfter, null);
    assert.ok(e.detail, 'no message');
  }

  const zero = { bytes: 0, count: 0 };

  test('usage reports the values\' bytes and the counts of each tier\'s location', async () => {
    const sdk = client('t-usage');
    assert.deepEqual(await sdk.storage.usage(), { files: zero, documents: zero, kv: zero });
    await sdk.storage.files.write('a/long/path/name.txt', 'hello'); // 5 bytes; names are free
    await sdk.storage.db.collection('notes').set('n1', { a: 1 }); // {"a":1}: 7 bytes
    await sdk.storage.kv.set('k', 'abc');
    await sdk.storage.kv.withTier('user').set('u', 'wxyz');
    await sdk.storage.db.collection('team', { tier: 'shared' }).set('t', [1, 2]); // [1,2]: 5 bytes

    const priv = { files: { bytes: 5, count: 1 }, documents: { bytes: 7, count: 1 }, kv: { bytes: 3, count: 1 } };
    assert.deepEqual(await sdk.storage.usage(), priv);
    assert.deepEqual(await sdk.storage.usage({ tier: 'private' }), priv);
    const user = { files: zero, documents: zero, kv: { bytes: 4, count: 1 } };
    assert.deepEqual(await sdk.storage.usage({ tier: 'user' }), user);
    const shared = { files: zero, documents: { bytes: 5, count: 1 }, kv: zero };
    assert.deepEqual(await sdk.storage.usage({ tier: 'shared' }), shared);

    // The same user in another app: its own private data, the same user and shared data.
    const other = client('t-usage', 'u1', 'app-v');
    assert.deepEqual(await other.storage.usage(), { files: zero, documents: zero, kv: zero });
    assert.deepEqual(await other.storage.usage({ tier: 'user' }), user);
    assert.deepEqual(await other.storage.usage({ tier: 'shared' }), shared);
    // Another user of the tenant has no user data.
    assert.deepEqual(await client('t-usage', 'u2').storage.usage({ tier: 'user' }), { files: zero, documents: zero, kv: zero });
  });

  test('a write over the server\'s default quota or the tenant\'s own rejects with quota_exceeded and stores nothing', async () => {
    const sdk = client('t-quota');
    // -default-quota: 2 kv keys in the whole tenant, whatever the tier.
    await sdk.storage.kv.set('a', '1');
    await sdk.storage.kv.withTier('shared').set('b', '2');
    await overQuota(sdk.storage.kv.set('c', '3'));
    await overQuota(sdk.storage.kv.incr('n'));
    assert.equal(await sdk.storage.kv.get('c'), null);
    await sdk.storage.kv.set('a', 'replaced'); // no new key
    await overQuota(client('t-quota', 'u1', 'app-v').storage.kv.set('c', '3'));
    // Deletes always work, and make room.
    await sdk.storage.kv.withTier('shared').del('b');
    await sdk.storage.kv.set('c', '3');

    // 16 bytes of files.
    await sdk.storage.files.write('f1', '0123456789');
    await overQuota(sdk.storage.files.write('f2', '0123456789'));
    await overQuota(sdk.storage.files.uploadUrl('f3').then((url) => uploadToSignedUrl(url, '0123456789')));
    assert.deepEqual((await sdk.storage.files.list()).items.map((f) => f.key), ['f1']);

    // The tenant's own quota replaces the default; another tenant keeps the default.
    const q = await admin('PUT', '/v1/admin/tenants/t-quota/quota', { kv: { count: 3 }, documents: { count: 1 } });
    assert.deepEqual(q, { files: { bytes: 16, count: 0 }, documents: { bytes: 0, count: 1 }, kv: { bytes: 0, count: 3 } });
    await sdk.storage.kv.set('d', '4');
    await overQuota(sdk.storage.kv.set('e', '5'));
    await sdk.storage.db.collection('c').set('x', {});
    await overQuota(sdk.storage.db.collection('c').set('y', {}));
    // A batch whose sets would go over is refused whole.
    await overQuota(sdk.storage.db.collection('c').batch([{ op: 'delete', key: 'nothing' }, { op: 'set', key: 'z', value: 1 }]));
    assert.equal(await sdk.storage.db.collection('c').count(), 1);
    const other = client('t-quota-2');
    await other.storage.kv.set('a', '1');
    await other.storage.kv.set('b', '1');
    await overQuota(other.storage.kv.set('c', '1'));

    // The usage an app sees, and the admin's view of the tenant with its quota.
    const u = await sdk.storage.usage();
    assert.deepEqual(u.kv, { bytes: 10, count: 3 }); // a = 'replaced', c = '3', d = '4'
    assert.deepEqual(u.files, { bytes: 10, count: 1 });
    const total = await admin('GET', '/v1/admin/tenants/t-quota/usage');
    assert.deepEqual(total.quota, q);
    assert.deepEqual(total.kv, u.kv);
    assert.deepEqual(await admin('POST', '/v1/admin/tenants/t-quota/usage/recount'), total);
  });
});
