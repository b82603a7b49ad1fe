// Compile-time checks of the public types (npm run typecheck): the API used
// as an app would, beyond the seed's snippets (test/seed/*.js are checked
// too). Never run; every line must type-check under strict.
import { CpodClient, CpodError, uploadToSignedUrl } from '@cpod/sdk';
import type { FileWriteResult, Tier, QueryResult, BatchResult, CpodErrorCode, FileUploadUrlOptions } from '@cpod/sdk';
import type { DocWithEtag, DocEtag, DocSetIfOptions } from '@cpod/sdk';
import type { Usage, UsageFigures } from '@cpod/sdk';

declare const baseUrl: string;
declare function refresh(): Promise<string>;

const sdk = new CpodClient({ baseUrl, token: async () => refresh() });
const fromEnv = CpodClient.fromEnv({ token: () => 'tok' });
const plain = new CpodClient({ baseUrl, token: 'tok', fetch: globalThis.fetch });

async function files(): Promise<void> {
  const tier: Tier = 'user';
  const w: FileWriteResult = await sdk.storage.files.write('a/b.txt', 'text', { contentType: 'text/plain', tier });
  const n: number = w.size;
  const lm: string = w.lastModified;
  await sdk.storage.files.write('b', new Uint8Array(3));
  await sdk.storage.files.write('c', new Blob(['x']));
  await sdk.storage.files.write('d', new ReadableStream<Uint8Array>());
  await sdk.storage.files.write('e', new ArrayBuffer(2));
  const s: ReadableStream<Uint8Array> = await sdk.storage.files.read('a/b.txt', { tier, offset: 1, length: 2 });
  const url: string = await fromEnv.storage.files.url('a', { expiresIn: 60 });
  const page = await plain.storage.files.list('a/', { limit: 10, cursor: null, tier: 'shared' });
  const next: string | null = page.nextCursor;
  for (const e of page.items) e.key.toUpperCase() + e.etag + e.size.toFixed();
  await sdk.storage.files.delete('a', { tier: 'private', signal: AbortSignal.timeout(1000) });
  void [n, lm, s, url, next];
  // @ts-expect-error a number is not file data
  await sdk.storage.files.write('x', 42);
  // @ts-expect-error no such tier
  await sdk.storage.files.read('x', { tier: 'public' });
}

async function uploads(file: Blob): Promise<void> {
  const opts: FileUploadUrlOptions = { expiresIn: 600, contentType: 'image/png', maxSize: 5 << 20, tier: 'user' };
  const url: string = await sdk.storage.files.uploadUrl('avatars/me.png', opts);
  await sdk.storage.files.uploadUrl('a', { signal: AbortSignal.timeout(1000) });
  const r: FileWriteResult = await uploadToSignedUrl(url, file);
  await uploadToSignedUrl(new URL(url), 'text', { contentType: 'text/plain', signal: AbortSignal.timeout(1000), fetch: globalThis.fetch });
  await uploadToSignedUrl(url, new Uint8Array(1));
  await uploadToSignedUrl(url, new ReadableStream<Uint8Array>());
  void r.etag;
  // @ts-expect-error maxSize is a number of bytes
  await sdk.storage.files.uploadUrl('a', { maxSize: '5MB' });
  // @ts-expect-error no such tier
  await sdk.storage.files.uploadUrl('a', { tier: 'public' });
  // @ts-expect-error an upload URL takes no token: there is no token option
  await uploadToSignedUrl(url, file, { token: 'tok' });
  // @ts-expect-error a number is not file data
  await uploadToSignedUrl(url, 42);
  // @ts-expect-error it answers the stored file, not a string
  const s: string = await uploadToSignedUrl(url, file);
  void s;
}

interface Prefs { mode: string; fontSize: number }

async function documents(): Promise<void> {
  const prefs = sdk.storage.db.collection<Prefs>('preferences', { tier: 'user' });
  await prefs.set('theme', { mode: 'dark', fontSize: 14 });
  const p = await prefs.get('theme');
  if (p !== null) p.fontSize.toFixed();
  // @ts-expect-error get may answer null
  (await prefs.get('theme')).mode;
  const there: boolean = await prefs.exists('theme', { signal: AbortSignal.timeout(1000) });
  const q: QueryResult<Prefs> = await prefs.query({ filter: { mode: 'dark', 'a.b': null }, sort: [['fontSize', -1], ['mode', 1]], limit: 5 });
  await prefs.query({ cursor: q.nextCursor });
  const b: BatchResult = await prefs.batch([{ op: 'set', key: 'k', value: { mode: 'x', fontSize: 1 } }, { op: 'delete', key: 'j' }]);
  for (const r of b.results) if (!r.ok) r.error?.toUpperCase();
  // @ts-expect-error no MongoDB operators
  await prefs.query({ filter: { mode: { $gt: 1 } } });
  // Operator objects: ranges, sets, not-equal, and counts.
  await prefs.query({ filter: { fontSize: { gte: 10, lt: 20 }, mode: { in: ['dark', 'light'] }, 'a.b': { ne: null } } });
  await prefs.query({ filter: { fontSize: { gt: 1, ne: 5 }, mode: { lte: 'z' } } });
  const n: number = await prefs.count({ mode: 'dark', fontSize: { gt: 12 } });
  await prefs.count();
  n.toFixed();
  // @ts-expect-error an empty operator object
  await prefs.query({ filter: { mode: {} } });
  // @ts-expect-error one lower bound at most
  await prefs.query({ filter: { fontSize: { gt: 1, gte: 2 } } });
  // @ts-expect-error one upper bound at most
  await prefs.count({ fontSize: { lt: 1, lte: 2 } });
  // @ts-expect-error in stands alone
  await prefs.query({ filter: { mode: { in: ['a'], ne: 'b' } } });
  // @ts-expect-error in takes at least one value
  await prefs.count({ mode: { in: [] } });
  // @ts-expect-error bounds are scalars
  await prefs.count({ mode: { gt: { a: 1 } } });
  // @ts-expect-error unknown operator
  await prefs.count({ mode: { eq: 1 } });
  // @ts-expect-error sort orders are 1 or -1
  await prefs.query({ sort: { mode: 2 } });
}

interface Profile { name: string; bio?: string; nick: string | null; address: { city: string; zip?: string }; tags: string[]; scores: Record<string, number> }

async function documentVersions(maybe: string | undefined): Promise<void> {
  const profiles = sdk.storage.db.collection<Profile>('profiles');
  const cur: DocWithEtag<Profile> | null = await profiles.getWithEtag('p1', { signal: AbortSignal.timeout(1000) });
  const plain: void = await profiles.set('p1', { name: 'a', nick: null, address: { city: 'x' }, tags: [], scores: {} });
  if (cur !== null) {
    const etag: DocEtag = cur.etag;
    cur.value.address.city.toUpperCase();
    const replaced: boolean = await profiles.set('p1', { ...cur.value, name: 'b' }, { ifMatch: etag });
    const removed: boolean = await profiles.delete('p1', { ifMatch: etag, signal: AbortSignal.timeout(1000) });
    const merged: Profile | false = await profiles.patch('p1', { address: { zip: '75001' }, bio: null }, { ifMatch: etag });
    if (merged !== false) merged.name.toUpperCase();
    void [replaced, removed];
  }
  const created: boolean = await profiles.set('p2', { name: 'c', nick: 'c', address: { city: 'y' }, tags: ['t'], scores: {} }, { ifNoneMatch: '*' });
  const gone: void = await profiles.delete('p2');
  const anyExisting: boolean = await profiles.delete('p2', { ifMatch: '*' });
  const m: Profile = await profiles.patch('p1', { name: 'd', tags: ['x', 'y'], address: { zip: undefined }, scores: { a: 1, b: null } });
  const loose = sdk.storage.db.collection('anything');
  const v: any = await loose.patch('k', { a: { b: null }, c: [1] });
  const opts: DocSetIfOptions = { ifNoneMatch: '*' };
  const viaType: boolean = await loose.set('k', 1, opts);
  void [plain, created, gone, anyExisting, m, v, viaType];
  // @ts-expect-error a conditional set may not write: boolean, not void
  const sure: void = await profiles.set('p1', m, { ifNoneMatch: '*' });
  // @ts-expect-error a conditional patch may not apply: false is possible
  const sureMerged: Profile = await profiles.patch('p1', { name: 'e' }, { ifMatch: '*' });
  // @ts-expect-error an etag never read must not become an unconditional set
  await profiles.set('p1', m, { ifMatch: maybe });
  // @ts-expect-error ... nor an unconditional delete
  await profiles.delete('p1', { ifMatch: maybe });
  // @ts-expect-error ... nor an unconditional patch
  await profiles.patch('p1', { name: 'f' }, { ifMatch: maybe });
  // @ts-expect-error ifMatch and ifNoneMatch cannot be used together
  await profiles.set('p1', m, { ifMatch: '*', ifNoneMatch: '*' });
  // @ts-expect-error ifNoneMatch is '*' only
  await profiles.set('p1', m, { ifNoneMatch: '"abc"' });
  // @ts-expect-error ifNoneMatch applies to set only
  await profiles.delete('p1', { ifNoneMatch: '*' });
  // @ts-expect-error a merge patch is an object, not a whole value
  await loose.patch('k', 42);
  // @ts-expect-error an array is not a merge patch either
  await loose.patch('k', [1, 2]);
  // @ts-expect-error name is required: a patch cannot remove it
  await profiles.patch('p1', { name: null });
  // @ts-expect-error a patch of nick: null would remove it, not store null
  await profiles.patch('p1', { nick: null });
  // @ts-expect-error nested fields are checked too
  await profiles.patch('p1', { address: { city: 3 } });
  // @ts-expect-error no such field
  await profiles.patch('p1', { age: 3 });
  // @ts-expect-error getWithEtag may answer null
  (await profiles.getWithEtag('p1')).etag;
  void [sure, sureMerged];
}

async function kv(): Promise<void> {
  const kv = sdk.storage.kv;
  await kv.set('k', { a: 1 }, { ttl: 60 });
  const v: string | null = await kv.get('k');
  const e: boolean = await kv.exists('k');
  const n: number = await kv.incr('c');
  const m: number = await kv.incr('c', 5);
  const big: bigint = await kv.incr('c', 10n);
  const t: number | null = await kv.ttl('k');
  await kv.withTier('shared').del('k');
  void [v, e, n, m, big, t];
}

async function kvConditions(flag: boolean, maybe: string | undefined): Promise<void> {
  const kv = sdk.storage.kv;
  const id = crypto.randomUUID();
  const always: true = await kv.set('k', 'v', { ttl: 30 });
  const plain: true = await kv.set('k', 'v');
  const got: boolean = await kv.set('lock', id, { ttl: 30, ifAbsent: true });
  const cas: boolean = await kv.set('k', 'w', { ifValue: await kv.get('k') });
  const refreshed: boolean = await kv.set('lock', id, { ttl: 30, ifValue: id, ifAbsent: false });
  const dynamic: boolean = await kv.set('k', 'v', { ifAbsent: flag });
  const released: boolean = await kv.del('lock', { ifValue: id });
  const gone: void = await kv.del('lock');
  const kept: boolean = await kv.expire('k', 60);
  const persisted: boolean = await kv.expire('k', null, { signal: AbortSignal.timeout(1000) });
  void [always, plain, got, cas, refreshed, dynamic, released, gone, kept, persisted];
  // @ts-expect-error a conditional set may not write: boolean, not true
  const sure: true = await kv.set('lock', id, { ifAbsent: true });
  // @ts-expect-error ifAbsent and ifValue cannot be used together
  await kv.set('k', 'v', { ifAbsent: true, ifValue: 'v' });
  // @ts-expect-error a flag cannot be combined with ifValue either
  await kv.set('k', 'v', { ifAbsent: flag, ifValue: 'v' });
  // @ts-expect-error ifValue compares with the stored text: a string
  await kv.set('k', 'v', { ifValue: 42 });
  // @ts-expect-error an unset lock id must not become an unconditional set
  await kv.set('k', 'v', { ifValue: maybe });
  // @ts-expect-error ... nor an unconditional delete
  await kv.del('lock', { ifValue: maybe });
  // @ts-expect-error del needs the value the key holds, not null
  await kv.del('lock', { ifValue: null });
  // @ts-expect-error expire needs a ttl, or null to remove it
  await kv.expire('k');
  // @ts-expect-error seconds as a number
  await kv.expire('k', '60');
  void sure;
}

async function usage(): Promise<void> {
  const u: Usage = await sdk.storage.usage();
  const f: UsageFigures = u.files;
  const n: number = f.bytes + f.count + u.documents.bytes + u.kv.count;
  await sdk.storage.usage({ tier: 'shared', signal: AbortSignal.timeout(1000) });
  void n;
  // @ts-expect-error no such tier
  await sdk.storage.usage({ tier: 'public' });
  // @ts-expect-error the options are an object, not a tier
  await sdk.storage.usage('user');
  // @ts-expect-error no quota in an app's usage: that is the admin API's
  void u.quota;
}

function errors(e: unknown): void {
  if (e instanceof CpodError) {
    const status: number = e.status;
    const code: CpodErrorCode | string = e.code;
    const id: string | null = e.requestId;
    const retry: number | null = e.retryAfter;
    if (e.code === 'not_integer' || e.code === 'backend_unavailable' || e.code === 'insufficient_storage') void [status, code, id, retry, e.detail, e.message];
    const over: CpodErrorCode = 'quota_exceeded';
    if (e.code === over && e.status === 507) void e.detail;
  }
}

void [files, uploads, documents, documentVersions, kv, kvConditions, usage, errors];
