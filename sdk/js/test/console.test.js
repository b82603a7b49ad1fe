// The web console (/console/ of ./httpserver) in a real browser: Debian's
// chromium, headless, driven by playwright-core (nothing downloads a
// browser). It signs in with the admin token, registers an app, mints a
// development token; Node writes a file, a document and a kv value with
// that token through @cpod/sdk; the console then finds, edits and deletes
// each of them, and follows a live change feed. It measures the time to
// the first interactive view of a collection of 10k documents, and keeps
// a screenshot of each view in console-screenshots/ at the repository root
// (gitignored).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { CpodClient } from '@cpod/sdk';
import { allScopes, repoRoot, startServer } from './helpers.js';

const chromiumPath = process.env.CPOD_CHROMIUM ?? '/usr/bin/chromium';
const chromiumArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const shots = join(repoRoot, 'console-screenshots');

/** @type {Awaited<ReturnType<typeof startServer>> | undefined} */
let srv;
/** @type {import('playwright-core').Browser | undefined} */
let browser;
after(async () => {
  await browser?.close();
  await srv?.stop();
});

test('the console registers an app, mints a token, and finds, edits and deletes what the SDK wrote', async (t) => {
  if (!existsSync(chromiumPath)) {
    if (process.env.CI) assert.fail(`${chromiumPath} is missing`);
    t.skip(`${chromiumPath} is missing: apt-get install chromium`);
    return;
  }
  mkdirSync(shots, { recursive: true });
  srv = await startServer(); // on loopback: the console is on by default
  const base = srv.url;
  const { chromium } = await import('playwright-core');
  browser = await chromium.launch({ executablePath: chromiumPath, headless: true, args: chromiumArgs, timeout: 60_000 });
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  /** @type {string[]} */
  const errors = [];
  page.on('console', (m) => {
    // A refused call (a 404 usage route, a 412) is logged by the browser; the console handles it.
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('dialog', (d) => d.accept());
  /** @type {string[]} */
  const urls = [];
  page.on('request', (r) => urls.push(r.url()));
  const shot = (name) => page.screenshot({ path: join(shots, name + '.png'), fullPage: true });
  const ready = async () => page.waitForSelector('body[data-ready]');

  // Sign in with the keyboard.
  await page.goto(base + '/console/');
  await page.getByLabel('Admin token').waitFor();
  await shot('01-sign-in');
  await page.keyboard.type(srv.adminToken); // the field has the focus
  await page.keyboard.press('Enter');
  await page.getByRole('heading', { name: 'Tenants' }).waitFor();

  // Apps: register one with every scope.
  await page.getByRole('link', { name: 'Apps' }).click();
  await page.getByLabel('Client id').fill('app-console');
  await page.getByLabel('Name').fill('Console test');
  for (const s of allScopes) await page.locator('form').first().getByLabel(s).check();
  await page.getByRole('button', { name: 'Register' }).click();
  await page.getByRole('heading', { name: /app-console/ }).waitFor();
  await shot('02-apps');

  // A development token from the form.
  await page.getByRole('link', { name: 'Dev token' }).click();
  await page.getByLabel('Tenant').fill('t-console');
  await page.getByLabel(/^App/).fill('app-console');
  await page.getByLabel(/^User/).fill('u1');
  await page.getByRole('button', { name: 'Mint token' }).click();
  const token = await page.getByLabel('The token').inputValue();
  assert.match(token, /^ey[\w-]+\.[\w-]+\.[\w-]+$/);
  await shot('03-dev-token');

  // Node writes through the SDK with that token.
  const sdk = new CpodClient({ baseUrl: base, token });
  await sdk.storage.files.write('notes/hello.txt', 'hello from the SDK', { contentType: 'text/plain' });
  const notes = sdk.storage.db.collection('notes');
  await notes.set('d1', { title: 'first', n: 1 });
  await sdk.storage.kv.set('greeting', 'hello');
  const big = sdk.storage.db.collection('big');
  for (let b = 0; b < 20; b++) {
    const ops = Array.from({ length: 500 }, (_, i) => ({ op: 'set', key: 'k' + String(b * 500 + i).padStart(5, '0'), value: { i: b * 500 + i, tag: i % 2 ? 'odd' : 'even' } }));
    const r = await big.batch(ops);
    assert.equal(r.succeeded, 500);
  }

  // A second tenant whose ids hold characters URLs treat specially.
  const odd = new CpodClient({ baseUrl: base, token: srv.token({ tenant: 't:odd$#?.3', app: 'app-console', user: 'u&1', scopes: allScopes }) });
  await odd.storage.kv.withTier('user').set('k?#/x', 'odd value');

  // Tenants, then the tenant, then its app's private location.
  await page.getByRole('link', { name: 'Tenants' }).click();
  await page.getByRole('link', { name: 't:odd$#?.3' }).waitFor();
  await shot('04a-tenants');
  await page.getByRole('link', { name: 't:odd$#?.3' }).click();
  await page.getByRole('link', { name: 'User u&1 — user tier' }).click();
  await page.getByRole('link', { name: 'KV' }).click();
  await page.getByRole('button', { name: 'k?#/x' }).click();
  await page.waitForFunction(() => /** @type {HTMLTextAreaElement} */ (document.querySelector('textarea[name=kvvalue]')).value === 'odd value');
  await page.getByRole('link', { name: 'Tenants', exact: true }).first().click();
  await page.getByRole('link', { name: 't-console' }).click();
  await page.getByRole('link', { name: /App app-console/ }).waitFor();
  // Usage of what the SDK wrote, and a quota set from the console.
  await page.getByRole('row', { name: /^documents/ }).getByText('10001').waitFor();
  await page.getByLabel('kv quota count (empty: unlimited)').fill('50');
  await page.getByRole('button', { name: 'Save quota' }).click();
  await page.getByText('Saved the quota of t-console.').waitFor();
  const quota = await (await fetch(base + '/v1/admin/tenants/t-console/quota', { headers: { Authorization: 'Bearer ' + srv.adminToken } })).json();
  assert.equal(quota.kv.count, 50);
  await shot('04-tenant');
  await page.getByRole('link', { name: /App app-console/ }).click();

  // Files: find, preview, replace (upload), delete.
  const fileRow = page.getByRole('row', { name: /notes\/hello\.txt/ });
  await fileRow.waitFor();
  await fileRow.getByRole('button', { name: 'Preview' }).click();
  await page.locator('pre.text', { hasText: 'hello from the SDK' }).waitFor();
  await page.getByLabel('Path').fill('notes/hello.txt');
  await page.getByLabel('File').setInputFiles({ name: 'hello.txt', mimeType: 'text/plain', buffer: Buffer.from('edited in the console') });
  await page.getByRole('button', { name: 'Upload' }).click();
  await page.getByText('Uploaded notes/hello.txt.').waitFor();
  assert.equal(await new Response(await sdk.storage.files.read('notes/hello.txt')).text(), 'edited in the console');
  await shot('05-files');
  await page.getByRole('row', { name: /notes\/hello\.txt/ }).getByRole('button', { name: 'Delete' }).click();
  await page.getByText('Deleted notes/hello.txt.').waitFor();
  assert.deepEqual((await sdk.storage.files.list('notes/')).items, []);

  // Documents: the collection, the document, an edit with If-Match, a delete.
  await page.getByRole('link', { name: 'Documents' }).click();
  await page.getByRole('link', { name: 'notes' }).click();
  await page.getByRole('button', { name: 'd1' }).click();
  const value = page.getByLabel('Value (JSON)');
  await page.waitForFunction(() => /** @type {HTMLTextAreaElement} */ (document.querySelector('textarea[name=docvalue]')).value.includes('first'));
  await value.fill('{"title": "edited", "n": 2}');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText('Saved d1.').waitFor();
  assert.deepEqual(await notes.get('d1'), { title: 'edited', n: 2 });
  // A write meanwhile makes the console's next save a 412, not a lost update.
  await notes.set('d1', { title: 'by the SDK' });
  await value.fill('{"title": "stale"}');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText(/Not saved: the document changed/).waitFor();
  assert.deepEqual(await notes.get('d1'), { title: 'by the SDK' });
  await page.getByRole('button', { name: 'd1' }).click();
  await page.waitForFunction(() => /** @type {HTMLTextAreaElement} */ (document.querySelector('textarea[name=docvalue]')).value.includes('by the SDK'));
  await shot('06-documents');
  await page.getByRole('button', { name: 'Delete', exact: true }).click();
  await page.getByText('Deleted d1.').waitFor();
  assert.equal(await notes.get('d1'), null);

  // The query builder on the big collection: a filter, a sort, pages.
  await page.getByRole('link', { name: 'big' }).click();
  await page.getByRole('button', { name: 'Add filter' }).click();
  await page.getByLabel('Field', { exact: true }).fill('tag');
  await page.getByLabel('Value', { exact: true }).fill('"odd"');
  await page.getByRole('button', { name: 'Add sort' }).click();
  await page.getByLabel('Sort by').fill('i');
  await page.getByLabel('Order').selectOption('-1');
  await page.getByRole('button', { name: 'Run query' }).click();
  await page.getByRole('button', { name: 'k09999' }).waitFor();
  await page.getByRole('button', { name: 'Next page' }).click();
  await page.getByRole('button', { name: 'k09899' }).waitFor();
  await shot('07-query');

  // KV: find, edit, delete.
  await page.getByRole('link', { name: 'KV' }).click();
  await page.getByRole('button', { name: 'greeting' }).click();
  await page.waitForFunction(() => /** @type {HTMLTextAreaElement} */ (document.querySelector('textarea[name=kvvalue]')).value === 'hello');
  await page.getByLabel('Value', { exact: true }).fill('bonjour');
  await page.getByLabel(/^TTL/).fill('600');
  await page.getByRole('button', { name: 'Set' }).click();
  await page.getByText('Set greeting.').waitFor();
  assert.equal(await sdk.storage.kv.get('greeting'), 'bonjour');
  const ttl = await sdk.storage.kv.ttl('greeting');
  assert.ok(ttl > 590 && ttl <= 600, `ttl ${ttl}`);
  await shot('08-kv');
  await page.getByRole('row', { name: /greeting/ }).getByRole('button', { name: 'Delete' }).click();
  await page.getByText('Deleted greeting.').waitFor();
  assert.equal(await sdk.storage.kv.get('greeting'), null);

  // Live changes of a collection.
  await page.getByRole('link', { name: 'Live changes' }).click();
  await page.getByLabel('Collection, or key prefix').fill('notes');
  await page.getByRole('button', { name: 'Follow' }).click();
  await page.getByRole('button', { name: 'Stop' }).and(page.locator(':enabled')).waitFor();
  await new Promise((r) => setTimeout(r, 300)); // the stream is open before the write
  await notes.set('live1', { hello: 'stream' });
  await page.locator('.events li', { hasText: 'live1' }).waitFor({ timeout: 10_000 });
  await shot('09-live');
  await page.getByRole('button', { name: 'Stop' }).click();

  // Time to the first interactive view of the 10k-document collection:
  // a fresh load of the page (same tab: the session keeps the token),
  // from navigation start to the view's mark, best of three.
  const bigURL = base + '/console/#/tenants/t-console/' + encodeURIComponent('private:app-console') + '/db/big';
  const times = [];
  for (let i = 0; i < 3; i++) {
    await page.goto('about:blank');
    await page.goto(bigURL);
    await ready();
    await page.getByRole('button', { name: 'k00000' }).waitFor();
    times.push(await page.evaluate(() => performance.getEntriesByName('cpod:view-ready')[0].startTime));
  }
  const best = Math.min(...times);
  console.log(`# console: first view of a 10k-document collection interactive in ${best.toFixed(0)} ms (loads: ${times.map((x) => x.toFixed(0)).join(', ')} ms)`);
  assert.ok(best < 500, `time to interactive ${best} ms`);
  assert.equal(await page.locator('tbody tr').count(), 50, 'one page of 50 documents, not the collection');

  // Phone width and dark mode.
  await page.setViewportSize({ width: 390, height: 844 });
  await shot('10-phone-documents');
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - document.documentElement.clientWidth);
  assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px at 390px`);
  await page.goto(base + '/console/#/tenants');
  await ready();
  await shot('11-phone-tenants');
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.emulateMedia({ colorScheme: 'dark' });
  await page.goto(base + '/console/#/tenants/t-console');
  await ready();
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(bg, 'rgb(17, 19, 24)', 'dark mode follows the system');
  await shot('12-dark-tenant');

  // Every request stayed on the origin, no URL carried a token, and every
  // listing asked for a bounded page.
  const origin = new URL(base).origin;
  for (const u of urls) {
    if (u === 'about:blank') continue;
    assert.equal(new URL(u).origin, origin, `request to another origin: ${u}`);
    assert.ok(!u.includes(srv.adminToken) && !u.includes(token), `a token in a URL: ${u}`);
    const p = new URL(u);
    if (/^\/v1\/admin\/(tenants|tenants\/[^/]+\/locations(\/[^/]+\/(collections|kv|files))?)$/.test(p.pathname)) {
      const limit = Number(p.searchParams.get('limit'));
      assert.ok(limit >= 1 && limit <= 1000, `unbounded listing: ${u}`);
    }
  }
  assert.deepEqual(errors, []);
});
