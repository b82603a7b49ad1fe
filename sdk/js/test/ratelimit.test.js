// Rate limits (the server's -rate-limit) as the SDK surfaces them: a call
// over its tenant's limit rejects with a CpodError of status 429, code
// 'rate_limited' and retryAfter in seconds, on GET and on HEAD (no body:
// the code comes from Cpod-Error); another tenant is still served.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { CpodClient, CpodError } from '@cpod/sdk';
import { allScopes, startServer } from './helpers.js';

/** @type {Awaited<ReturnType<typeof startServer>>} */
let srv;

before(async () => {
  // One request every 100 s, two at once: the test's own pace does not matter.
  srv = await startServer(['-rate-limit', '0.01/s,burst=2']);
  await srv.registerApp('app-rl', allScopes);
});

after(async () => {
  await srv?.stop();
});

/**
 * rateLimited asserts p rejects with 429 rate_limited and a retryAfter of
 * about 100 s (the server rounds up; real time runs meanwhile).
 * @param {Promise<unknown>} p
 */
async function rateLimited(p) {
  const e = await p.then((v) => assert.fail(`resolved ${v}; wanted 429 rate_limited`), (err) => err);
  assert.ok(e instanceof CpodError, `not a CpodError: ${e}`);
  assert.equal(e.status, 429, e.message);
  assert.equal(e.code, 'rate_limited', e.message);
  assert.equal(typeof e.retryAfter, 'number');
  assert.ok(e.retryAfter >= 90 && e.retryAfter <= 100, `retryAfter ${e.retryAfter}`);
}

test('a tenant over its rate limit gets rate_limited with retryAfter; another tenant does not', async () => {
  const t1 = new CpodClient({ baseUrl: srv.url, token: srv.token({ tenant: 't1', app: 'app-rl', user: 'u1', scopes: allScopes }) });
  const t2 = new CpodClient({ baseUrl: srv.url, token: srv.token({ tenant: 't2', app: 'app-rl', user: 'u1', scopes: allScopes }) });
  assert.equal(await t1.storage.kv.get('missing'), null);
  assert.equal(await t1.storage.kv.exists('missing'), false);
  await rateLimited(t1.storage.kv.get('missing'));
  await rateLimited(t1.storage.kv.exists('missing'));
  await rateLimited(t1.storage.db.collection('c').get('k'));
  assert.equal(await t2.storage.kv.get('missing'), null);
});
