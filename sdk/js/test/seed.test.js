// The seed's JavaScript snippets (test/seed/*.js), run verbatim through
// @cpod/sdk against the real engine, with CPOD_API_URL and CPOD_TOKEN set as
// an app gets them.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { CpodClient } from '@cpod/sdk';
import { allScopes, findSeed, pkgDir, startServer } from './helpers.js';

/** @type {Awaited<ReturnType<typeof startServer>>} */
let srv;
/** @type {CpodClient} */
let sdk;

before(async () => {
  srv = await startServer();
  await srv.registerApp('app-seed', allScopes);
  process.env.CPOD_API_URL = srv.url;
  process.env.CPOD_TOKEN = srv.token({ app: 'app-seed', user: 'u1', scopes: allScopes });
  sdk = CpodClient.fromEnv();
});

after(async () => {
  delete process.env.CPOD_API_URL;
  delete process.env.CPOD_TOKEN;
  await srv?.stop();
});

const text = async (/** @type {ReadableStream} */ s) => new Response(s).text();

test('seed: files write', async () => {
  const { result } = await import('./seed/files-write.js');
  assert.equal(result.key, 'config/settings.json');
  assert.equal(result.tier, 'private');
  assert.equal(result.size, 17);
  assert.equal(result.contentType, 'application/json');
  assert.ok(result.etag);
  assert.ok(!Number.isNaN(Date.parse(result.lastModified)));
  // The other two writes landed in their tiers, and only there.
  assert.equal((await sdk.storage.files.list('', { tier: 'user' })).items.map((e) => e.key).join(), 'avatar.png');
  assert.equal(await text(await sdk.storage.files.read('brand/logo.svg', { tier: 'shared' })),
    '<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"/>');
  await assert.rejects(sdk.storage.files.read('avatar.png'), { status: 404, code: 'not_found' });
});

test('seed: files read', async () => {
  const { text } = await import('./seed/files-read.js');
  assert.equal(text, '{"hello":"world"}');
});

test('seed: files presigned URL', async () => {
  const pdf = '%PDF-1.4 report';
  await sdk.storage.files.write('exports/report.pdf', pdf, { contentType: 'application/pdf' });
  const { url } = await import('./seed/files-url.js');
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/v1\/storage\/signed\//);
  // No auth header needed to download.
  const res = await fetch(url);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/pdf');
  assert.equal(await res.text(), pdf);
});

test('seed: files list and delete', async () => {
  await sdk.storage.files.write('exports/old-report.pdf', 'old');
  const { listing } = await import('./seed/files-list-delete.js');
  assert.deepEqual(listing.items.map((e) => e.key), ['exports/old-report.pdf', 'exports/report.pdf']);
  assert.equal(listing.nextCursor, null);
  assert.equal(listing.items[0].size, 3);
  const after = await sdk.storage.files.list('exports/');
  assert.deepEqual(after.items.map((e) => e.key), ['exports/report.pdf']);
});

test('seed: documents set and get', async () => {
  const { theme, missing } = await import('./seed/db-set-get.js');
  assert.deepEqual(theme, { mode: 'dark', accent: 'purple', fontSize: 14 });
  // Field order round-trips too.
  assert.deepEqual(Object.keys(theme), ['mode', 'accent', 'fontSize']);
  assert.equal(missing, null);
  assert.deepEqual(await sdk.storage.db.collection('preferences', { tier: 'user' }).get('layout'), { sidebar: 'collapsed' });
  assert.equal(await sdk.storage.db.collection('preferences').get('layout'), null);
});

test('seed: documents query, with a second page', async () => {
  const sessions = sdk.storage.db.collection('sessions');
  // 25 active pro sessions (more than a page of 20) and a few that do not match.
  const ops = [];
  for (let i = 0; i < 25; i++) {
    ops.push({ op: 'set', key: `s${String(i).padStart(2, '0')}`, value: { status: 'active', plan: 'pro', createdAt: 1000 + i } });
  }
  ops.push({ op: 'set', key: 'free', value: { status: 'active', plan: 'free', createdAt: 5000 } });
  ops.push({ op: 'set', key: 'old', value: { status: 'closed', plan: 'pro', createdAt: 6000 } });
  const b = await sessions.batch(ops);
  assert.equal(b.succeeded, 27);
  const { active } = await import('./seed/db-query.js');
  assert.equal(active.items.length, 20);
  // Newest first.
  assert.deepEqual(active.items.slice(0, 3).map((i) => i.value.createdAt), [1024, 1023, 1022]);
  assert.ok(active.items.every((i) => i.value.status === 'active' && i.value.plan === 'pro'));
  assert.equal(typeof active.nextCursor, 'string');
  // The snippet's page 2 (filter ignored with a cursor): the last 5 of the query.
  const page2 = await sessions.query({ filter: { status: 'active' }, cursor: active.nextCursor, limit: 20 });
  assert.deepEqual(page2.items.map((i) => i.value.createdAt), [1004, 1003, 1002, 1001, 1000]);
  assert.equal(page2.nextCursor, null);
});

test('seed: documents batch', async () => {
  const { result } = await import('./seed/db-batch.js');
  assert.equal(result.succeeded, 3);
  assert.equal(result.failed, 0);
  assert.deepEqual(result.results.map((r) => [r.key, r.op, r.ok]), [
    ['user:123', 'set', true], ['user:456', 'set', true], ['user:999', 'delete', true],
  ]);
  assert.deepEqual(await sdk.storage.db.collection('cache').get('user:456'), { name: 'Bob', plan: 'free' });
});

test('seed: kv', async () => {
  const { session, alive, count, count2, remaining } = await import('./seed/kv.js');
  assert.equal(session, '{"userId":"usr-xxx","plan":"pro"}');
  assert.equal(alive, true);
  assert.equal(count, 1);
  assert.equal(count2, 6);
  assert.ok(remaining > 3590 && remaining <= 3600, `ttl ${remaining}`);
  assert.equal(await sdk.storage.kv.exists('session:abc123'), false);
  assert.equal(await sdk.storage.kv.get('session:abc123'), null);
});

test('the snippets are the seed\'s, verbatim', (t) => {
  const seedFile = findSeed();
  if (!seedFile) {
    t.skip('shared/seed/storage-sdk.md is not beside the repository');
    return;
  }
  // Trailing spaces aside (the seed's blank lines hold one), each snippet is
  // a contiguous run of the seed's lines.
  const norm = (/** @type {string} */ s) => s.split('\n').map((l) => l.trimEnd()).join('\n');
  const seed = norm(readFileSync(seedFile, 'utf8'));
  const files = readdirSync(join(pkgDir, 'test', 'seed')).filter((f) => f !== 'fixtures.js');
  assert.equal(files.length, 8);
  for (const f of files) {
    const src = readFileSync(join(pkgDir, 'test', 'seed', f), 'utf8');
    const m = /\/\/ --- seed:begin\n([\s\S]*?)\n\/\/ --- seed:end\n/.exec(src);
    assert.ok(m, `${f}: no seed:begin/seed:end markers`);
    assert.ok(seed.includes(norm(m[1])), `${f}: the snippet is not in ${seedFile} as it is`);
  }
  // And every code block of the seed that uses the SDK is one of them.
  const snippets = files.map((f) => readFileSync(join(pkgDir, 'test', 'seed', f), 'utf8'));
  for (const line of ['CpodClient.fromEnv()', "sdk.storage.files.read('config/settings.json')", "sdk.storage.files.url('exports/report.pdf'",
    "sdk.storage.files.list('exports/'", "sdk.storage.db.collection('preferences')", "sdk.storage.db.collection('sessions')",
    "sdk.storage.db.collection('cache')", 'const kv = sdk.storage.kv', "await kv.del('session:abc123')"]) {
    assert.ok(seed.includes(line), `the seed no longer has ${line}`);
    assert.ok(snippets.some((s) => s.includes(line)), `no snippet runs ${line}`);
  }
});
