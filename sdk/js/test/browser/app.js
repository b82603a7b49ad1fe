// The browser test's app (test/browser.test.js serves it from an origin
// other than the engine's): it loads @cpod/sdk as a plain ES module, uploads
// through the upload URL it was handed (no token), uses files, documents and
// kv (a lock too), and leaves what it saw in window.__cpodResult.
import { CpodClient, CpodError, uploadToSignedUrl } from '/sdk/index.js';

const params = new URLSearchParams(location.hash.slice(1));
const sdk = new CpodClient({ baseUrl: params.get('api') ?? '', token: async () => params.get('token') });
const text = async (stream) => new Response(stream).text();

const out = {};
try {
  const { files, db, kv } = sdk.storage;
  // First, with no token: a PUT with Content-Type application/json, which
  // the browser preflights (neither the method nor the type is "simple").
  const uploadUrl = params.get('upload') ?? '';
  out.upload = await uploadToSignedUrl(uploadUrl, new Blob(['{"from":"chromium"}'], { type: 'application/json' }));
  try {
    await uploadToSignedUrl(uploadUrl, '<b>x</b>', { contentType: 'text/html' });
    out.uploadRefused = 'no error';
  } catch (e) {
    out.uploadRefused = { isCpodError: e instanceof CpodError, status: e.status, code: e.code };
  }
  out.write = await files.write('browser/hello.txt', new Blob(['hello from chromium'], { type: 'text/plain' }));
  // Browsers stream request bodies only over HTTP/2: the SDK gathers a
  // ReadableStream into a Blob first.
  const enc = new TextEncoder();
  const rs = new ReadableStream({
    start(c) {
      c.enqueue(enc.encode('streamed '));
      c.enqueue(enc.encode('body'));
      c.close();
    },
  });
  out.streamWrite = await files.write('browser/stream.txt', rs, { contentType: 'text/plain' });
  out.list = (await files.list('browser/')).items.map((e) => e.key);
  out.read = await text(await files.read('browser/hello.txt'));
  out.readStream = await text(await files.read('browser/stream.txt'));
  out.signed = await (await fetch(await files.url('browser/hello.txt', { expiresIn: 60 }))).text();

  const notes = db.collection('notes');
  await notes.set('n1', { title: 'first', tag: 'web' });
  await notes.set('n2', { title: 'second', tag: 'web' });
  await notes.set('n3', { title: 'third', tag: 'other' });
  out.query = (await notes.query({ filter: { tag: 'web' }, sort: { title: -1 } })).items;
  out.missing = await notes.get('nope');
  // HEAD across origins: a missing document is false only because the
  // engine's Cpod-Error: not_found header is exposed to the page.
  out.docExists = [await notes.exists('n1'), await notes.exists('nope')];

  out.incr = [await kv.incr('visits'), await kv.incr('visits', 5)];
  out.exists = await kv.exists('visits');
  out.ttl = await kv.ttl('visits'); // HEAD: reads the exposed Cpod-Ttl header
  // A lock: conditional PUT, PATCH and a DELETE with a body, each preflighted.
  const id = 'holder-' + Math.random().toString(36).slice(2);
  out.lock = [await kv.set('lock', id, { ttl: 30, ifAbsent: true }), await kv.set('lock', 'other', { ttl: 30, ifAbsent: true })];
  out.expire = [await kv.expire('lock', 60), await kv.ttl('lock'), await kv.expire('lock', null), await kv.ttl('lock')];
  out.release = [await kv.del('lock', { ifValue: 'other' }), await kv.del('lock', { ifValue: id }), await kv.exists('lock')];
  await kv.set('visits-name', 'abc');
  try {
    await kv.incr('visits-name');
    out.error = 'no error';
  } catch (e) {
    out.error = { isCpodError: e instanceof CpodError, status: e.status, code: e.code, hasRequestId: !!e.requestId };
  }

  // Document versions: the ETag header is read across origins (exposed by
  // the engine), If-Match / If-None-Match and PATCH are preflighted.
  const docs = db.collection('versions');
  out.created = [await docs.set('v', { a: 1, b: 1 }, { ifNoneMatch: '*' }), await docs.set('v', { a: 0 }, { ifNoneMatch: '*' })];
  const v1 = await docs.getWithEtag('v');
  out.etagQuoted = /^"[^"]+"$/.test(v1.etag);
  out.ifMatch = [await docs.set('v', { ...v1.value, a: 2 }, { ifMatch: v1.etag }), await docs.set('v', { a: 9 }, { ifMatch: v1.etag })];
  const v2 = await docs.getWithEtag('v');
  out.patched = [await docs.patch('v', { b: null, c: 3 }, { ifMatch: v2.etag }), await docs.patch('v', { c: 9 }, { ifMatch: v2.etag })];
  out.deleted = [await docs.delete('v', { ifMatch: v2.etag }), await docs.delete('v', { ifMatch: (await docs.getWithEtag('v')).etag })];

  // Follow a collection across origins: fetch streaming (EventSource cannot
  // send Authorization), Last-Event-ID preflighted on a resume.
  const chat = db.collection('chat');
  const seen = [];
  let wake = () => {};
  const h = chat.watch({}, (ev) => { seen.push(ev); wake(); });
  while (!seen.some((e) => e.key === 'ready')) {
    await chat.set('ready', true);
    await new Promise((r) => { wake = r; setTimeout(r, 100); });
  }
  seen.length = 0;
  await chat.set('m1', { from: 'chromium', text: 'hi' });
  await chat.delete('m1');
  while (seen.length < 2) await new Promise((r) => { wake = r; });
  h.close();
  await h.done;
  out.watch = seen.map((e) => [e.type, e.key, e.value ?? null]);
  const resumed = [];
  const ac = new AbortController();
  for await (const ev of chat.watch({ lastEventId: seen[0].id, signal: ac.signal })) {
    resumed.push([ev.type, ev.key]);
    ac.abort();
  }
  out.resumed = resumed;
} catch (e) {
  out.fatal = `${e?.name}: ${e?.message}`;
}
window.__cpodResult = out;
document.getElementById('out').textContent = JSON.stringify(out, null, 2);
