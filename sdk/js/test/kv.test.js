// kv locks, compare-and-set and TTL refresh against the real engine:
// kv.set with ifAbsent / ifValue, kv.del with ifValue, kv.expire. Runs on the
// engine's embedded miniredis, and again on a real Redis when
// CPODTEST_REDIS_URL is set (CI sets it), under a key prefix of its own.
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
  const e = await p.then((v) => assert.fail(`resolved ${v}; wanted ${status} ${code}`), (err) => err);
  assert.ok(e instanceof CpodError, `not a CpodError: ${e}`);
  assert.equal(e.status, status, e.message);
  assert.equal(e.code, code, e.message);
  return e;
}

/** sleep waits ms milliseconds. */
const sleep = (/** @type {number} */ ms) => new Promise((r) => setTimeout(r, ms));

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
    // Every key of a run is unique: a real Redis is shared with other runs.
    const run = randomUUID().slice(0, 8);
    const key = (/** @type {string} */ k) => `${k}:${run}`;

    before(async () => {
      srv = await startServer(args);
      await srv.registerApp('app-all', allScopes);
      fullToken = srv.token({ app: 'app-all', user: 'u1', scopes: allScopes });
      sdk = new CpodClient({ baseUrl: srv.url, token: fullToken });
    });

    after(async () => {
      await srv?.stop();
    });

    test('racing lock takers: exactly one wins, losers can neither refresh nor release it', async () => {
      const lock = key('lock:report');
      const takers = Array.from({ length: 24 }, () => ({
        id: randomUUID(),
        // A client each: separate connections, as separate processes would have.
        kv: new CpodClient({ baseUrl: srv.url, token: fullToken }).storage.kv,
      }));
      const won = await Promise.all(takers.map((t) => t.kv.set(lock, t.id, { ttl: 30, ifAbsent: true })));
      assert.equal(won.filter((w) => w === true).length, 1, `winners: ${won}`);
      assert.ok(won.every((w) => typeof w === 'boolean'));
      const winner = takers[won.indexOf(true)];
      const loser = takers[(won.indexOf(true) + 1) % takers.length];
      assert.equal(await sdk.storage.kv.get(lock), winner.id);
      const ttl = await sdk.storage.kv.ttl(lock);
      assert.ok(ttl !== null && ttl > 0 && ttl <= 30, `ttl ${ttl}`);

      // A loser's refresh and release change nothing.
      assert.equal(await loser.kv.set(lock, loser.id, { ttl: 30, ifValue: loser.id }), false);
      assert.equal(await loser.kv.del(lock, { ifValue: loser.id }), false);
      assert.equal(await sdk.storage.kv.get(lock), winner.id);

      // The holder refreshes (the TTL is replaced) and releases.
      assert.equal(await winner.kv.set(lock, winner.id, { ttl: 120, ifValue: winner.id }), true);
      const refreshed = await sdk.storage.kv.ttl(lock);
      assert.ok(refreshed !== null && refreshed > 30 && refreshed <= 120, `ttl ${refreshed}`);
      assert.equal(await winner.kv.del(lock, { ifValue: winner.id }), true);
      assert.equal(await sdk.storage.kv.get(lock), null);
      // Released twice: the lock is gone, the condition no longer holds.
      assert.equal(await winner.kv.del(lock, { ifValue: winner.id }), false);
      // Free again: the next taker wins.
      assert.equal(await loser.kv.set(lock, loser.id, { ttl: 30, ifAbsent: true }), true);
      assert.equal(await loser.kv.del(lock, { ifValue: loser.id }), true);
    });

    test('a lock that expired and was taken by another is not refreshed or released by its old holder', async () => {
      const kv = sdk.storage.kv;
      const lock = key('lock:expiring');
      const [a, b] = [randomUUID(), randomUUID()];
      assert.equal(await kv.set(lock, a, { ttl: 1, ifAbsent: true }), true);
      assert.equal(await kv.set(lock, b, { ttl: 30, ifAbsent: true }), false);
      for (let i = 0; await kv.exists(lock); i++) {
        assert.ok(i < 40, 'the lock did not expire within 4 s');
        await sleep(100);
      }
      assert.equal(await kv.set(lock, b, { ttl: 30, ifAbsent: true }), true);
      assert.equal(await kv.set(lock, a, { ttl: 30, ifValue: a }), false, 'a refreshed b\'s lock');
      assert.equal(await kv.del(lock, { ifValue: a }), false, 'a released b\'s lock');
      assert.equal(await kv.get(lock), b);
      assert.equal(await kv.del(lock, { ifValue: b }), true);
    });

    test('compare-and-set: concurrent read-modify-write loops lose no update', async () => {
      const counter = key('cas:counter');
      const workers = 8;
      const each = 5;
      let conflicts = 0;
      await Promise.all(Array.from({ length: workers }, async () => {
        const kv = new CpodClient({ baseUrl: srv.url, token: fullToken }).storage.kv;
        for (let done = 0, tries = 0; done < each; tries++) {
          assert.ok(tries < 50 * workers * each, 'compare-and-set never took');
          const cur = await kv.get(counter); // null the first time: ifValue null means "still missing"
          const next = String(Number(cur ?? '0') + 1);
          if (await kv.set(counter, next, { ifValue: cur })) done++;
          else conflicts++;
        }
      }));
      assert.equal(await sdk.storage.kv.get(counter), String(workers * each), `${conflicts} conflicts`);

      const kv = sdk.storage.kv;
      // Compared with the stored text, which is compact JSON for a non-string value.
      const doc = key('cas:doc');
      await kv.set(doc, { n: 1, tags: ['a'] });
      assert.equal(await kv.set(doc, { n: 2 }, { ifValue: '{ "n": 1, "tags": ["a"] }' }), false);
      assert.equal(await kv.set(doc, { n: 2 }, { ifValue: '{"n":1,"tags":["a"]}' }), true);
      assert.equal(await kv.get(doc), '{"n":2}');
      // ifValue null on an existing key, and ifValue on a missing one: no write.
      assert.equal(await kv.set(doc, 'x', { ifValue: null }), false);
      assert.equal(await kv.set(key('cas:missing'), 'x', { ifValue: '' }), false);
      assert.equal(await kv.get(key('cas:missing')), null);
      // A conditional set replaces the TTL: without ttl the key no longer expires.
      await kv.set(doc, 'v1', { ttl: 60 });
      assert.equal(await kv.set(doc, 'v2', { ifValue: 'v1' }), true);
      assert.equal(await kv.ttl(doc), -1);
      // ifAbsent: false is a plain set, which always writes.
      assert.equal(await kv.set(doc, 'v3', { ifAbsent: false }), true);
      assert.equal(await kv.set(doc, 'v4'), true);
      assert.equal(await kv.get(doc), 'v4');
      await Promise.all([kv.del(counter), kv.del(doc)]);
    });

    test('expire sets and removes a TTL, keeps the value, and answers false for a missing key', async () => {
      const kv = sdk.storage.kv;
      const k = key('session');
      await kv.set(k, 'data');
      assert.equal(await kv.expire(k, 60), true);
      const t = await kv.ttl(k);
      assert.ok(t !== null && t > 55 && t <= 60, `ttl ${t}`);
      assert.equal(await kv.get(k), 'data');
      assert.equal(await kv.expire(k, null), true);
      assert.equal(await kv.ttl(k), -1);
      assert.equal(await kv.get(k), 'data');
      // A fraction is rounded up, never to "none" or "now".
      assert.equal(await kv.expire(k, 0.3), true);
      assert.equal(await kv.ttl(k), 1);
      assert.equal(await kv.expire(k, null), true);
      assert.equal(await kv.ttl(k), -1);
      // A user-tier key is another key.
      assert.equal(await kv.withTier('user').expire(k, 60), false);
      const missing = key('missing');
      assert.equal(await kv.expire(missing, 60), false);
      assert.equal(await kv.expire(missing, null), false);
      assert.equal(await kv.exists(missing), false, 'expire created the key');
      await kv.del(k);
    });

    test('412 resolves false; every other failure of a conditional call rejects', async () => {
      const k = key('guarded');
      await sdk.storage.kv.set(k, 'held');
      await srv.registerApp('app-reader', allScopes);
      const reader = new CpodClient({
        baseUrl: srv.url,
        token: srv.token({ app: 'app-reader', scopes: ['storage.private.read'] }),
      }).storage.kv;
      // Not allowed to write: 403, not "the condition did not hold".
      await rejectsWith(reader.set(k, 'x', { ifAbsent: true }), 403, 'insufficient_scope');
      await rejectsWith(reader.set(k, 'x', { ifValue: 'held' }), 403, 'insufficient_scope');
      await rejectsWith(reader.del(k, { ifValue: 'held' }), 403, 'insufficient_scope');
      await rejectsWith(reader.expire(k, 60), 403, 'insufficient_scope');
      await rejectsWith(new CpodClient({ baseUrl: srv.url }).storage.kv.set(k, 'x', { ifAbsent: true }), 401, 'invalid_token');
      // The engine's 400s: a TTL over a year, a tier that does not exist.
      const kv = sdk.storage.kv;
      await rejectsWith(kv.set(k, 'x', { ttl: 366 * 86400, ifAbsent: true }), 400, 'invalid_request');
      await rejectsWith(kv.expire(k, 366 * 86400), 400, 'invalid_request');
      await rejectsWith(kv.withTier(/** @type {any} */ ('public')).del(k, { ifValue: 'held' }), 400, 'invalid_request');
      assert.equal(await kv.get(k), 'held');
      await kv.del(k);
    });

    test('both conditions at once are refused by the engine too (400, nothing written)', async () => {
      const k = key('both');
      const url = `${srv.url}/v1/storage/kv/${encodeURIComponent(k)}`;
      const res = await fetch(url, {
        method: 'PUT',
        headers: { Authorization: 'Bearer ' + fullToken, 'Content-Type': 'application/json' },
        body: JSON.stringify({ value: 'x', ifAbsent: true, ifValue: 'y' }),
      });
      assert.equal(res.status, 400);
      assert.equal((await res.json()).error, 'invalid_request');
      assert.equal(await sdk.storage.kv.get(k), null);
    });
  });
}

engineSuite('kv conditions (embedded SQLite store)', []);
// MongoDB and Redis go together (the server refuses one without the other).
if (process.env.CPODTEST_REDIS_URL && process.env.CPODTEST_MONGO_URI) {
  engineSuite('kv conditions (real Redis)', [
    '-redis-url', process.env.CPODTEST_REDIS_URL,
    '-redis-key-prefix', `cpod-sdk-js-test-${randomUUID().slice(0, 8)}:`,
    '-mongo-uri', process.env.CPODTEST_MONGO_URI,
    '-mongo-database', 'cpod_sdk_js_kv_test',
  ]);
} else {
  test('kv conditions (real Redis)', { skip: 'CPODTEST_REDIS_URL and CPODTEST_MONGO_URI are not both set' }, () => {});
}

describe('kv conditions on the wire', () => {
  /**
   * recorder is a client whose fetch records each request and answers with
   * answer (default 204).
   * @param {() => Response} [answer]
   */
  function recorder(answer = () => new Response(null, { status: 204 })) {
    /** @type {{method: string, url: string, body: any, type: string | null}[]} */
    const sent = [];
    /** @type {typeof fetch} */
    const f = async (input, init) => {
      const h = new Headers(init?.headers);
      sent.push({
        method: String(init?.method),
        url: String(input),
        body: init?.body == null ? null : JSON.parse(String(init.body)),
        type: h.get('Content-Type'),
      });
      return answer();
    };
    return { sent, kv: new CpodClient({ baseUrl: 'http://cpod.test', token: 't', fetch: f }).storage.kv };
  }

  test('what set, del and expire send', async () => {
    const { sent, kv } = recorder();
    assert.equal(await kv.set('l', 'id', { ttl: 0.5, ifAbsent: true }), true);
    assert.equal(await kv.set('l', 'id2', { ttl: 30, ifValue: 'id' }), true);
    assert.equal(await kv.set('l', 'id', { ifValue: null }), true);
    assert.equal(await kv.set('l', 'v', { ifAbsent: false }), true);
    assert.equal(await kv.set('l', 'v'), true);
    assert.equal(await kv.del('l', { ifValue: 'id' }), true);
    assert.equal(await kv.del('l'), undefined);
    assert.equal(await kv.expire('l', 29.1), true);
    assert.equal(await kv.withTier('user').expire('l', null), true);
    assert.deepEqual(sent.map((s) => [s.method, new URL(s.url).pathname + new URL(s.url).search, s.body]), [
      ['PUT', '/v1/storage/kv/l', { value: 'id', ttl: 1, ifAbsent: true }],
      ['PUT', '/v1/storage/kv/l', { value: 'id2', ttl: 30, ifValue: 'id' }],
      ['PUT', '/v1/storage/kv/l', { value: 'id', ifAbsent: true }],
      ['PUT', '/v1/storage/kv/l', { value: 'v' }],
      ['PUT', '/v1/storage/kv/l', { value: 'v' }],
      ['DELETE', '/v1/storage/kv/l', { ifValue: 'id' }],
      ['DELETE', '/v1/storage/kv/l', null],
      ['PATCH', '/v1/storage/kv/l', { ttl: 30 }],
      ['PATCH', '/v1/storage/kv/l?tier=user', { ttl: null }],
    ]);
    for (const s of sent) if (s.body !== null) assert.equal(s.type, 'application/json');
  });

  test('a 412 without the contract body, or on an unconditional call, rejects', async () => {
    // A proxy's 412 page is not the engine saying the condition did not hold.
    const proxy = recorder(() => new Response('<html>Precondition Failed</html>', { status: 412 })).kv;
    const p = await rejectsWith(proxy.set('l', 'id', { ifAbsent: true }), 412, '');
    assert.equal(p.detail, '<html>Precondition Failed</html>');
    await rejectsWith(proxy.del('l', { ifValue: 'id' }), 412, '');
    const conflict = () => new Response('{"error":"conflict","message":"no"}', { status: 412 });
    const engine = recorder(conflict).kv;
    assert.equal(await engine.set('l', 'id', { ifAbsent: true }), false);
    assert.equal(await engine.del('l', { ifValue: 'id' }), false);
    // Only a condition can fail that way: a plain set or del, or expire, rejects.
    await rejectsWith(engine.set('l', 'id'), 412, 'conflict');
    await rejectsWith(engine.del('l'), 412, 'conflict');
    await rejectsWith(engine.expire('l', 5), 412, 'conflict');
    // A 404 without the contract body (a wrong base URL) is not a missing key.
    const wrongBase = recorder(() => new Response('404 page not found', { status: 404 })).kv;
    await rejectsWith(wrongBase.expire('l', 5), 404, '');
  });

  test('both conditions, an undefined condition and bad values are refused before sending', async () => {
    const { sent, kv } = recorder();
    /** @type {any} */
    const unset = undefined;
    const refused = [
      kv.set('l', 'v', /** @type {any} */ ({ ifAbsent: true, ifValue: 'v' })),
      kv.set('l', 'v', /** @type {any} */ ({ ifAbsent: true, ifValue: null })),
      // A lock id never assigned must not make an unconditional write or delete.
      kv.set('l', 'v', { ifValue: unset }),
      kv.set('l', 'v', { ifAbsent: unset }),
      kv.del('l', { ifValue: unset }),
      kv.set('l', 'v', /** @type {any} */ ({ ifValue: 42 })),
      kv.set('l', 'v', /** @type {any} */ ({ ifValue: { a: 1 } })),
      kv.set('l', 'v', /** @type {any} */ ({ ifAbsent: 'yes' })),
      kv.del('l', /** @type {any} */ ({ ifValue: null })),
      kv.set('l', 'v', { ttl: -1, ifAbsent: true }),
      kv.set('..', 'v', { ifAbsent: true }),
      kv.del('', { ifValue: 'v' }),
      kv.expire('l', /** @type {any} */ (undefined)),
      kv.expire('l', 0),
      kv.expire('l', -1),
      kv.expire('l', Infinity),
      kv.expire('l', Number.NaN),
      kv.expire('l', /** @type {any} */ ('60')),
      kv.expire('.', 60),
    ];
    for (const p of refused) {
      const e = await p.then((v) => assert.fail(`resolved ${v}`), (err) => err);
      assert.ok(e instanceof CpodError, String(e));
      assert.deepEqual([e.status, e.code], [0, 'invalid_request'], e.message);
    }
    assert.deepEqual(sent, [], 'nothing was sent');
  });
});
