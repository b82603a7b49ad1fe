// Upload URLs against the real engine: files.uploadUrl signs, and
// uploadToSignedUrl stores through the URL with no token, from a Buffer, a
// Blob, a string and a Node stream; the refusals (another Content-Type, too
// large, expired, a download URL, a changed URL) are CpodErrors and store
// nothing.
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { CpodClient, CpodError, uploadToSignedUrl } from '@cpod/sdk';
import { allScopes, startServer } from './helpers.js';

/** @type {Awaited<ReturnType<typeof startServer>>} */
let srv;
/** @type {CpodClient} */
let sdk;
/** @type {string} */
let token;

before(async () => {
  srv = await startServer();
  await srv.registerApp('app-up', allScopes);
  token = srv.token({ app: 'app-up', user: 'u1', scopes: allScopes });
  sdk = new CpodClient({ baseUrl: srv.url, token });
});

after(async () => {
  await srv?.stop();
});

const text = async (/** @type {ReadableStream} */ s) => new Response(s).text();

/**
 * rejectsWith asserts p rejects with a CpodError of that status and code.
 * @param {Promise<unknown>} p
 * @param {number} status
 * @param {string} code
 */
async function rejectsWith(p, status, code) {
  const e = await p.then(() => assert.fail(`resolved; wanted ${status} ${code}`), (err) => err);
  assert.ok(e instanceof CpodError, `not a CpodError: ${e}`);
  assert.equal(e.status, status, e.message);
  assert.equal(e.code, code, e.message);
  return e;
}

/**
 * spy is a fetch that records each request's method, URL and headers, then
 * sends it on.
 */
function spy() {
  /** @type {{method: string, url: string, headers: Headers}[]} */
  const seen = [];
  /** @type {typeof fetch} */
  const f = async (input, init) => {
    seen.push({ method: String(init?.method), url: String(input), headers: new Headers(init?.headers) });
    return fetch(input, init);
  };
  return { seen, f };
}

/** assertMissing asserts nothing is stored at path. */
async function assertMissing(/** @type {string} */ path, tier = /** @type {'private'} */ ('private')) {
  await rejectsWith(sdk.storage.files.read(path, { tier }), 404, 'not_found');
}

describe('upload URLs', () => {
  test('a Buffer, a Blob, a string and a Node stream upload with no token and read back', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cpod-sdk-up-'));
    try {
      const big = Buffer.alloc(3 << 20, 'abcdefgh'); // streamed in several chunks
      const file = join(dir, 'big.bin');
      writeFileSync(file, big);
      const cases = /** @type {const} */ ([
        ['up/buffer.bin', Buffer.from([0, 1, 2, 255]), Buffer.from([0, 1, 2, 255]), 'application/octet-stream'],
        ['up/blob.json', new Blob(['{"a":1}'], { type: 'application/json' }), Buffer.from('{"a":1}'), 'application/json'],
        ['up/string.txt', 'héllo', Buffer.from('héllo'), 'application/octet-stream'],
        ['up/stream.bin', createReadStream(file), big, 'application/octet-stream'],
        ['up/web-stream.bin', Readable.toWeb(Readable.from([Buffer.from('web '), Buffer.from('stream')])), Buffer.from('web stream'), 'application/octet-stream'],
      ]);
      for (const [path, data, want, type] of cases) {
        const url = await sdk.storage.files.uploadUrl(path, { expiresIn: 60 });
        assert.equal(new URL(url).origin, srv.url, 'an absolute URL of the engine');
        const { seen, f } = spy();
        const r = await uploadToSignedUrl(url, /** @type {any} */ (data), { fetch: f });
        assert.deepEqual([r.key, r.tier, r.size, r.contentType], [path, 'private', want.length, type], path);
        assert.match(r.etag, /^".+"$/);
        assert.equal(seen.length, 1);
        assert.equal(seen[0].method, 'PUT');
        assert.equal(seen[0].headers.get('Authorization'), null, 'no token is sent');
        assert.ok(!seen[0].url.includes(token), 'no token in the URL');
        const back = Buffer.from(await new Response(await sdk.storage.files.read(path)).arrayBuffer());
        assert.ok(back.equals(want), path);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the signed Content-Type: the default when none is given; another one is 403 invalid_signature', async () => {
    const url = await sdk.storage.files.uploadUrl('typed/a.json', { contentType: 'application/json', maxSize: 100 });
    await rejectsWith(uploadToSignedUrl(url, '<h1>x</h1>', { contentType: 'text/html' }), 403, 'invalid_signature');
    await rejectsWith(uploadToSignedUrl(url, new Blob(['<h1>x</h1>'], { type: 'text/html' })), 403, 'invalid_signature');
    await assertMissing('typed/a.json');
    // No contentType and a string: the SDK sends the signed one.
    const r = await uploadToSignedUrl(url, '{"ok":true}');
    assert.equal(r.contentType, 'application/json');
    assert.equal(await text(await sdk.storage.files.read('typed/a.json')), '{"ok":true}');
    // The same media type, spelled in another case, is the same.
    const r2 = await uploadToSignedUrl(url, '[]', { contentType: 'Application/JSON' });
    assert.equal(r2.size, 2);
  });

  test('over maxSize is 413 too_large and stores nothing, with a length or streamed', async () => {
    const url = await sdk.storage.files.uploadUrl('big/x.bin', { maxSize: 10 });
    await rejectsWith(uploadToSignedUrl(url, Buffer.alloc(11)), 413, 'too_large');
    await rejectsWith(uploadToSignedUrl(url, 'x'.repeat(11)), 413, 'too_large');
    const chunks = async function* () {
      for (let i = 0; i < 4; i++) yield Buffer.alloc(4, i);
    };
    await rejectsWith(uploadToSignedUrl(url, chunks()), 413, 'too_large');
    // Far over: the engine answers before the body ends, and that answer,
    // not a broken connection, is what the caller gets.
    const many = async function* () {
      for (let i = 0; i < 32; i++) yield Buffer.alloc(64 << 10, i);
    };
    await rejectsWith(uploadToSignedUrl(url, many()), 413, 'too_large');
    await assertMissing('big/x.bin');
    // Exactly maxSize fits.
    const r = await uploadToSignedUrl(url, Buffer.alloc(10, 7));
    assert.equal(r.size, 10);
  });

  test('an expired upload URL is 403 expired', async () => {
    const url = await sdk.storage.files.uploadUrl('late/x.txt', { expiresIn: 3 });
    // The engine's clock is this machine's: the URL works for two more
    // seconds at least (room for a loaded machine), and dies at its expires
    // second.
    const expires = Number(new URL(url).searchParams.get('expires'));
    assert.ok(expires * 1000 > Date.now() + 1000 && expires * 1000 <= Date.now() + 3000, `expires ${expires}`);
    assert.equal((await uploadToSignedUrl(url, 'in time')).size, 7);
    await sdk.storage.files.delete('late/x.txt');
    await new Promise((r) => setTimeout(r, Math.max(0, expires * 1000 - Date.now()) + 150));
    await rejectsWith(uploadToSignedUrl(url, 'too late'), 403, 'expired');
    await assertMissing('late/x.txt');
  });

  test('a download URL cannot upload, an upload URL cannot download, a changed URL is refused', async () => {
    await sdk.storage.files.write('kept.txt', 'original');
    const getUrl = await sdk.storage.files.url('kept.txt', { expiresIn: 60 });
    await rejectsWith(uploadToSignedUrl(getUrl, 'overwritten'), 403, 'invalid_signature');
    assert.equal(await text(await sdk.storage.files.read('kept.txt')), 'original');

    const putUrl = await sdk.storage.files.uploadUrl('kept.txt', { maxSize: 100, contentType: 'text/plain' });
    const res = await fetch(putUrl);
    assert.equal(res.status, 403);
    assert.equal((await res.json()).error, 'invalid_signature');
    // Widening what the URL allows breaks its signature.
    const wider = new URL(putUrl);
    wider.searchParams.set('maxSize', '1000000');
    await rejectsWith(uploadToSignedUrl(wider, 'x'.repeat(200), { contentType: 'text/plain' }), 403, 'invalid_signature');
    const anyType = new URL(putUrl);
    anyType.searchParams.delete('contentType');
    await rejectsWith(uploadToSignedUrl(anyType, '<h1>', { contentType: 'text/html' }), 403, 'invalid_signature');
    const elsewhere = putUrl.replace('/kept.txt?', '/other.txt?');
    await rejectsWith(uploadToSignedUrl(elsewhere, 'x', { contentType: 'text/plain' }), 403, 'invalid_signature');
    await assertMissing('other.txt');
    assert.equal(await text(await sdk.storage.files.read('kept.txt')), 'original');
    // The URL as signed replaces the file.
    await uploadToSignedUrl(putUrl, 'replaced');
    assert.equal(await text(await sdk.storage.files.read('kept.txt')), 'replaced');
  });

  test('tiers and scopes: a user-tier URL; signing needs the write scope', async () => {
    const url = await sdk.storage.files.uploadUrl('me/avatar.png', { tier: 'user', contentType: 'image/png' });
    const r = await uploadToSignedUrl(url, new Uint8Array([0x89, 0x50, 0x4e, 0x47]));
    assert.deepEqual([r.key, r.tier, r.contentType, r.size], ['me/avatar.png', 'user', 'image/png', 4]);
    assert.equal((await sdk.storage.files.list('me/', { tier: 'user' })).items.length, 1);
    await assertMissing('me/avatar.png');

    const reader = new CpodClient({ baseUrl: srv.url, token: srv.token({ app: 'app-up', user: 'u1', scopes: ['storage.private.read'] }) });
    await rejectsWith(reader.storage.files.uploadUrl('x.txt'), 403, 'insufficient_scope');
  });
});

describe('upload URLs, on the wire', () => {
  /** recorder is a client whose fetch records each request and answers a signed URL. */
  function recorder() {
    /** @type {{url: string, body: string}[]} */
    const sent = [];
    /** @type {typeof fetch} */
    const f = async (input, init) => {
      sent.push({ url: String(input), body: String(init?.body) });
      return Response.json({ url: '/prefix/v1/storage/signed/x?method=PUT', expiresAt: '2030-01-01T00:00:00Z', method: 'PUT' });
    };
    return { sent, c: new CpodClient({ baseUrl: 'http://cpod.test/prefix/', token: 't', fetch: f }) };
  }

  test('uploadUrl sends method PUT and its options, as the Go client does, and resolves the URL', async () => {
    const { sent, c } = recorder();
    const url = await c.storage.files.uploadUrl('uploads/a.png', { expiresIn: 540.5, contentType: 'image/png', maxSize: 1024, tier: 'user' });
    assert.equal(url, 'http://cpod.test/prefix/v1/storage/signed/x?method=PUT');
    assert.equal(sent[0].url, 'http://cpod.test/prefix/v1/storage/signed-urls');
    assert.deepEqual(JSON.parse(sent[0].body),
      { key: 'uploads/a.png', method: 'PUT', tier: 'user', expiresIn: 541, contentType: 'image/png', maxSize: 1024 });
    await c.storage.files.uploadUrl('a', { contentType: '' });
    assert.deepEqual(JSON.parse(sent[1].body), { key: 'a', method: 'PUT' });
  });

  test('what cannot be signed or sent is refused before sending (status 0)', async () => {
    const { sent, c } = recorder();
    /** @type {string[]} */
    const fetched = [];
    /** @type {typeof fetch} */
    const f = async (input) => {
      fetched.push(String(input));
      return new Response(null, { status: 500 });
    };
    const refused = [
      c.storage.files.uploadUrl('a//b'), c.storage.files.uploadUrl('../x'), c.storage.files.uploadUrl(''),
      c.storage.files.uploadUrl('a', { maxSize: 0 }), c.storage.files.uploadUrl('a', { maxSize: -1 }),
      c.storage.files.uploadUrl('a', { maxSize: 1.5 }), c.storage.files.uploadUrl('a', { expiresIn: 0 }),
      // @ts-expect-error a content type is a string
      c.storage.files.uploadUrl('a', { contentType: 42 }),
      uploadToSignedUrl('not a url', 'x', { fetch: f }), uploadToSignedUrl('ftp://cpod.test/x', 'x', { fetch: f }),
      // @ts-expect-error a URL is a string
      uploadToSignedUrl(42, 'x', { fetch: f }),
      // @ts-expect-error not file data
      uploadToSignedUrl('http://cpod.test/v1/storage/signed/x', 42, { fetch: f }),
    ];
    for (const p of refused) {
      const e = await p.then(() => assert.fail('resolved'), (err) => err);
      assert.ok(e instanceof CpodError, String(e));
      assert.deepEqual([e.status, e.code], [0, 'invalid_request'], e.message);
    }
    assert.deepEqual(sent, [], 'nothing was signed');
    assert.deepEqual(fetched, [], 'nothing was uploaded');
  });
});
