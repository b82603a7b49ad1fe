// A real browser: Debian's chromium, headless, driven by playwright-core,
// loads a page from one origin that uses @cpod/sdk against the engine on
// another origin (allowed by -cors-origins), an upload URL included, and a
// page from an origin the engine does not allow, whose calls (its upload
// first) the browser must block.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { join, normalize } from 'node:path';
import { CpodClient } from '@cpod/sdk';
import { allScopes, pkgDir, startServer } from './helpers.js';

const chromiumPath = process.env.CPOD_CHROMIUM ?? '/usr/bin/chromium';
// The flags asked for by CI: headless, no sandbox (root in a container), and
// nothing that reaches the network on its own.
const chromiumArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8' };

/** servePage serves the test app and the SDK's sources on a free port. */
async function servePage() {
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://x').pathname;
    let file;
    if (path === '/') file = join(pkgDir, 'test', 'browser', 'index.html');
    else if (path === '/app.js') file = join(pkgDir, 'test', 'browser', 'app.js');
    else if (path.startsWith('/sdk/')) file = join(pkgDir, 'src', normalize(path.slice(5)).replace(/^(\.\.[/\\])+/, ''));
    if (!file || !existsSync(file)) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'Content-Type': types[/** @type {'.js'} */ (file.slice(file.lastIndexOf('.')))] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', () => r(undefined)));
  const addr = /** @type {import('node:net').AddressInfo} */ (server.address());
  return { server, origin: `http://127.0.0.1:${addr.port}` };
}

/** @type {Awaited<ReturnType<typeof startServer>> | undefined} */
let srv;
/** @type {import('node:http').Server[]} */
const pages = [];
/** @type {import('playwright-core').Browser | undefined} */
let browser;

after(async () => {
  await browser?.close();
  for (const p of pages) {
    p.closeAllConnections();
    p.close();
  }
  await srv?.stop();
});

test('a page on another origin uploads through an upload URL, writes, lists and reads a file, sets and queries documents, counts and locks in kv', async (t) => {
  if (!existsSync(chromiumPath)) {
    // CI installs chromium (.ci/run); elsewhere the test says why it did not run.
    if (process.env.CI) assert.fail(`${chromiumPath} is missing`);
    t.skip(`${chromiumPath} is missing: apt-get install chromium`);
    return;
  }
  const allowed = await servePage();
  const foreign = await servePage();
  pages.push(allowed.server, foreign.server);
  srv = await startServer(['-cors-origins', allowed.origin]);
  await srv.registerApp('app-web', allScopes);
  const token = srv.token({ app: 'app-web', user: 'u-web', scopes: allScopes });
  assert.notEqual(new URL(allowed.origin).port, new URL(srv.url).port, 'the page and the engine are two origins');

  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: chromiumArgs, timeout: 60_000 });
  const page = await browser.newPage();
  /** @type {string[]} */
  const consoleErrors = [];
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));

  const node = new CpodClient({ baseUrl: srv.url, token });
  const upload = await node.storage.files.uploadUrl('uploads/signed.json', { contentType: 'application/json', maxSize: 1024, expiresIn: 300 });
  const hash = new URLSearchParams({ api: srv.url, token, upload }).toString();
  await page.goto(`${allowed.origin}/#${hash}`);
  await page.waitForFunction(() => /** @type {any} */ (window).__cpodResult, null, { timeout: 30_000 });
  const out = await page.evaluate(() => /** @type {any} */ (window).__cpodResult);

  assert.equal(out.fatal, undefined, `the page failed: ${out.fatal}\n${consoleErrors.join('\n')}`);
  assert.deepEqual([out.upload.key, out.upload.tier, out.upload.size, out.upload.contentType],
    ['uploads/signed.json', 'private', 19, 'application/json']);
  assert.deepEqual(out.uploadRefused, { isCpodError: true, status: 403, code: 'invalid_signature' });
  assert.deepEqual([out.write.key, out.write.tier, out.write.size, out.write.contentType],
    ['browser/hello.txt', 'private', 19, 'text/plain']);
  assert.deepEqual([out.streamWrite.size, out.streamWrite.contentType], [13, 'text/plain']);
  assert.deepEqual(out.list, ['browser/hello.txt', 'browser/stream.txt']);
  assert.equal(out.read, 'hello from chromium');
  assert.equal(out.readStream, 'streamed body');
  assert.equal(out.signed, 'hello from chromium');
  assert.deepEqual(out.query, [
    { key: 'n2', value: { title: 'second', tag: 'web' } },
    { key: 'n1', value: { title: 'first', tag: 'web' } },
  ]);
  assert.equal(out.missing, null);
  assert.deepEqual(out.docExists, [true, false]);
  assert.deepEqual(out.incr, [1, 6]);
  assert.equal(out.exists, true);
  assert.equal(out.ttl, -1);
  assert.deepEqual(out.lock, [true, false]);
  assert.deepEqual(out.expire, [true, 60, true, -1]);
  assert.deepEqual(out.release, [false, true, false]);
  assert.deepEqual(out.error, { isCpodError: true, status: 409, code: 'not_integer', hasRequestId: true });
  assert.deepEqual(out.created, [true, false]);
  assert.equal(out.etagQuoted, true, 'the page could not read the ETag header');
  assert.deepEqual(out.ifMatch, [true, false]);
  assert.deepEqual(out.patched, [{ a: 2, c: 3 }, false]);
  assert.deepEqual(out.deleted, [false, true]);
  assert.deepEqual(out.watch, [['set', 'm1', { from: 'chromium', text: 'hi' }], ['delete', 'm1', null]]);
  assert.deepEqual(out.resumed, [['delete', 'm1']]);

  // What the page wrote is in the engine: Node reads it back with the same token.
  assert.equal(await new Response(await node.storage.files.read('uploads/signed.json')).text(), '{"from":"chromium"}');
  assert.equal(await new Response(await node.storage.files.read('browser/hello.txt')).text(), 'hello from chromium');
  assert.equal(await node.storage.kv.get('visits'), '6');

  // From an origin the engine does not allow, the browser blocks the call:
  // the upload, the page's first, is never sent (its preflight is refused).
  const foreignUpload = await node.storage.files.uploadUrl('uploads/foreign.json', { expiresIn: 300 });
  const foreignHash = new URLSearchParams({ api: srv.url, token, upload: foreignUpload }).toString();
  await page.goto(`${foreign.origin}/#${foreignHash}`);
  await page.waitForFunction(() => /** @type {any} */ (window).__cpodResult, null, { timeout: 30_000 });
  const refused = await page.evaluate(() => /** @type {any} */ (window).__cpodResult);
  assert.match(String(refused.fatal), /^TypeError: Failed to fetch/);
  assert.deepEqual((await node.storage.files.list('browser/')).items.map((e) => e.key), ['browser/hello.txt', 'browser/stream.txt']);
  assert.deepEqual((await node.storage.files.list('uploads/')).items.map((e) => e.key), ['uploads/signed.json']);
});
