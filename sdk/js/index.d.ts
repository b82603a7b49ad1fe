// Types of @cpod/sdk: cpod storage for JavaScript and TypeScript.
//
// The wire contract behind every call is the engine's OpenAPI document
// (openapi.json at the root of the repository, served at /v1/openapi.json).

/**
 * Who can read the data a call touches:
 * - `private` (the default): this app only;
 * - `user`: the token's user, in every app they use (needs a token with a user);
 * - `shared`: every app of the tenant.
 */
export type Tier = 'private' | 'user' | 'shared';

/** A bearer token, or a function that returns a fresh one before every call. */
export type TokenSource = string | (() => string | null | undefined | Promise<string | null | undefined>);

export interface CpodClientOptions {
  /**
   * Base URL of the API, http or https, such as `https://api.example.com`.
   * A path prefix is kept (`https://example.com/storage-api` when the engine
   * is mounted below the root); a trailing slash is dropped.
   */
  baseUrl: string;
  /**
   * The app's bearer token (a JWT), or a function (it may be async) called
   * before every request that returns one, for token refresh. An empty or
   * missing token sends no Authorization header, and calls fail with 401
   * `invalid_token`.
   */
  token?: TokenSource;
  /** The fetch to send requests with; default `globalThis.fetch`. */
  fetch?: typeof fetch;
}

/** Options every call accepts. */
export interface CallOptions {
  /** Aborts the call; fetch then rejects with the signal's reason (not a CpodError). */
  signal?: AbortSignal;
}

/** One change of a followed collection, kv or files (see `Collection.watch`). */
export interface ChangeEvent {
  /** Opaque position: pass it as `lastEventId` to resume after this event. */
  id: string;
  /**
   * `set` / `delete` (documents, kv), `write` / `delete` (files), or `reset`:
   * events were missed (too old to resume, too slow a consumer, an admin
   * erase); re-read, then keep following.
   */
  type: 'set' | 'delete' | 'write' | 'reset';
  /** Document key, kv key or file path relative to the tier ('' for reset). */
  key: string;
  /** A set's new value: the document's JSON value, or the kv string. Absent for deletes, files, kv TTL changes and values over 16 KiB. */
  value?: unknown;
  /** The document's or file's new etag. */
  etag?: string;
  /** A written file's size in bytes. */
  size?: number;
}

/** Options of `watch`. */
export interface WatchOptions {
  /** Stops following; the iterator ends, or the handle's `done` resolves. */
  signal?: AbortSignal;
  /** Follow one document only (collections). */
  key?: string;
  /** Follow only kv keys or file paths starting with this (kv, files). */
  prefix?: string;
  /** Resume after this event id (within the engine's retention: at least 1000 events or 10 minutes). */
  lastEventId?: string;
}

/** What `watch(options, onEvent)` returns. */
export interface WatchHandle {
  /** Stops following. */
  close(): void;
  /** Settles once it stopped: resolves after close() or the signal, rejects with the CpodError that ended it (invalid_scope, say). */
  done: Promise<void>;
}

/** Options of a call that addresses one tier. */
export interface TierOptions extends CallOptions {
  /** Default `private`. */
  tier?: Tier;
}

/**
 * The client of a cpod storage API.
 *
 * ```ts
 * import { CpodClient } from '@cpod/sdk'
 * const sdk = CpodClient.fromEnv()              // CPOD_API_URL, CPOD_TOKEN
 * const sdk2 = new CpodClient({ baseUrl, token: async () => refresh() })
 * ```
 */
export declare class CpodClient {
  constructor(options: CpodClientOptions);
  /**
   * A client for the API in the environment variable `CPOD_API_URL` that
   * sends the token in `CPOD_TOKEN` (Node; browsers have no environment:
   * use the constructor). `options` replace what the environment gives, such
   * as a token refresh function. Throws a TypeError when CPOD_API_URL is
   * unset, or CPOD_TOKEN is unset and `options` give no token.
   */
  static fromEnv(options?: Partial<CpodClientOptions>): CpodClient;
  /** The base URL calls go to, without a trailing slash. */
  readonly baseUrl: string;
  /** The three storage primitives, and what they hold (`usage`). */
  readonly storage: Storage;
}

export interface Storage {
  /** Blobs (S3): PDFs, images, exports, anything binary or large. */
  readonly files: Files;
  /** JSON documents in named collections (MongoDB), with filters, sorting, cursors, batches. */
  readonly db: Db;
  /** Ephemeral string values (Redis) with TTLs and atomic counters. */
  readonly kv: Kv;
  /**
   * What the caller's location holds in a tier: this app's private data (the
   * default), the token's user's data across apps (`tier: 'user'`), or the
   * tenant's shared data (`tier: 'shared'`). Needs the tier's read scope.
   * Exact when no writes are in flight.
   *
   * ```ts
   * const u = await sdk.storage.usage({ tier: 'user' })
   * console.log(u.files.bytes, u.documents.count, u.kv.count)
   * ```
   *
   * The server's operator may give the tenant quotas of the same figures; a
   * write over one rejects with a CpodError of code `quota_exceeded` (507).
   */
  usage(options?: TierOptions): Promise<Usage>;
}

/** How much a location holds, per primitive (`sdk.storage.usage`). */
export interface Usage {
  files: UsageFigures;
  documents: UsageFigures;
  kv: UsageFigures;
}

/**
 * Bytes and count of one primitive. Bytes are those of the values only: a
 * file's contents, a document's JSON text as `get` answers it, a kv value's
 * text; names (paths, keys, collections) are not counted.
 */
export interface UsageFigures {
  bytes: number;
  count: number;
}

// ---------------------------------------------------------------- files

/**
 * The content of a file. A Buffer is a Uint8Array. A ReadableStream (or, in
 * Node, any async iterable of bytes such as `fs.createReadStream(...)`) is
 * streamed in Node; a browser gathers it into a Blob first, since browsers
 * stream request bodies only over HTTP/2.
 */
export type FileData =
  | string
  | Blob
  | ArrayBuffer
  | ArrayBufferView
  | ReadableStream<Uint8Array>
  | AsyncIterable<Uint8Array>;

export interface FileWriteOptions extends TierOptions {
  /** Stored with the file and sent back when it is read. Default: the Blob's type, else `application/octet-stream`. */
  contentType?: string;
}

/** A stored file, as `files.write` answers. */
export interface FileWriteResult {
  /** The path, relative to the tier. */
  key: string;
  tier: Tier;
  /** Bytes stored. */
  size: number;
  contentType: string;
  etag: string;
  /** Time of this write, an RFC 3339 string. */
  lastModified: string;
}

export interface FileReadOptions extends TierOptions {
  /** First byte to read (an HTTP Range request); default 0. */
  offset?: number;
  /** How many bytes to read from `offset`; default (0) to the end. */
  length?: number;
}

export interface FileUrlOptions extends TierOptions {
  /** Seconds the URL works; default 3600, at most 604800 (7 days). */
  expiresIn?: number;
}

export interface FileUploadUrlOptions extends TierOptions {
  /** Seconds the URL works; default 3600, at most 604800 (7 days). */
  expiresIn?: number;
  /**
   * The Content-Type the upload must carry (another one is refused with 403
   * `invalid_signature`), such as `image/png`; default any.
   */
  contentType?: string;
  /**
   * The most bytes the upload may hold (more is refused with 413 `too_large`
   * and stores nothing); default, and at most, the engine's file size limit.
   */
  maxSize?: number;
}

/** Options of `uploadToSignedUrl`. */
export interface SignedUploadOptions extends CallOptions {
  /**
   * The Content-Type to send. Default: a Blob's type, else the one the URL
   * was signed for, else `application/octet-stream`.
   */
  contentType?: string;
  /** The fetch to send the upload with; default `globalThis.fetch`. */
  fetch?: typeof fetch;
}

export interface FileListOptions extends TierOptions {
  /** Most entries in one page: default 100, at most 1000. */
  limit?: number;
  /** The `nextCursor` of the previous page. */
  cursor?: string | null;
}

/** A file in a listing. */
export interface FileEntry {
  /** The path, relative to the tier. */
  key: string;
  size: number;
  /** An RFC 3339 string. */
  lastModified: string;
  etag: string;
}

export interface FileListing {
  items: FileEntry[];
  /** Fetches the next page through `cursor`; null on the last page. */
  nextCursor: string | null;
}

/**
 * sdk.storage.files. Paths are relative to the tier, such as
 * `config/settings.json`: slash-separated, with no leading, trailing or
 * doubled slash and no `.` or `..` segment (refused before sending, as a
 * CpodError with status 0 and code `invalid_request`). Each segment is
 * percent-encoded once; `/` separates segments.
 */
export interface Files {
  /** Follows a tier's file changes: write and delete events, metadata only (see `Collection.watch`). */
  watch(options?: WatchOptions & { tier?: Tier }): AsyncIterable<ChangeEvent>;
  watch(options: (WatchOptions & { tier?: Tier }) | undefined, onEvent: (event: ChangeEvent) => void | Promise<void>): WatchHandle;
  /** Stores `data` at `path`, replacing any file there. */
  write(path: string, data: FileData, options?: FileWriteOptions): Promise<FileWriteResult>;
  /**
   * Opens the file for reading: its bytes arrive as the stream is read.
   * `await new Response(stream).text()` reads it whole. A missing file
   * rejects with a CpodError 404 `not_found`.
   */
  read(path: string, options?: FileReadOptions): Promise<ReadableStream<Uint8Array>>;
  /**
   * A time-limited URL that downloads the file with no Authorization header
   * (send it to a browser). The file must exist (else 404 `not_found`).
   */
  url(path: string, options?: FileUrlOptions): Promise<string>;
  /**
   * A time-limited URL that stores one file at `path` when its bytes are
   * sent to it with PUT and no Authorization header (`uploadToSignedUrl`):
   * hand it to a browser, which then uploads straight to storage. The file
   * need not exist; an existing one is replaced. Needs the tier's write
   * scope, and stops working when it expires (403 `expired`) or when the
   * app no longer declares that scope. It cannot download, nor a `url()`
   * upload (403 `invalid_signature`).
   */
  uploadUrl(path: string, options?: FileUploadUrlOptions): Promise<string>;
  /** The files whose path starts with `prefix` (default all), one page at a time, in path order. */
  list(prefix?: string, options?: FileListOptions): Promise<FileListing>;
  /** Removes the file; a missing file is not an error. */
  delete(path: string, options?: TierOptions): Promise<void>;
}

/**
 * Stores `data` through an upload URL of `files.uploadUrl`, as the one PUT
 * it allows, with no token and no cookies: the URL is the only credential.
 * Needs no client, so a page that was handed the URL can upload with it.
 * Answers the stored file, as `files.write`. A refusal is a CpodError:
 * 403 `invalid_signature` (another Content-Type than the signed one, a
 * changed URL, a download URL), 403 `expired`, 413 `too_large` (nothing is
 * stored).
 *
 * ```ts
 * const url = await sdk.storage.files.uploadUrl('avatars/me.png', { contentType: 'image/png', maxSize: 5 << 20 })
 * // ... in the browser that was given url:
 * const file = await uploadToSignedUrl(url, input.files[0])
 * ```
 */
export declare function uploadToSignedUrl(url: string | URL, data: FileData, options?: SignedUploadOptions): Promise<FileWriteResult>;

// ---------------------------------------------------------------- documents

/** A JSON value, as a document holds. */
export type JsonValue = string | number | boolean | null | JsonValue[] | { [key: string]: JsonValue };

/** What a filter compares a field with: equality with a scalar. */
export type FilterScalar = string | number | boolean | null;

/** The lower end of a range: `gt` or `gte`, one at most. */
type LowerBound = { gt: FilterScalar; gte?: never } | { gte: FilterScalar; gt?: never } | { gt?: never; gte?: never };
/** The upper end of a range: `lt` or `lte`, one at most. */
type UpperBound = { lt: FilterScalar; lte?: never } | { lte: FilterScalar; lt?: never } | { lt?: never; lte?: never };
/** At least one operator of a range or `ne`. */
type SomeOperator = { gt: FilterScalar } | { gte: FilterScalar } | { lt: FilterScalar } | { lte: FilterScalar } | { ne: FilterScalar };

/**
 * An operator object on one field, instead of a scalar:
 * - a range: one lower bound (`gt` or `gte`) and/or one upper bound (`lt` or
 *   `lte`), matching only values of the bound's type (numbers with numbers,
 *   strings with strings, booleans with booleans); a `null` bound matches
 *   null and missing fields for `gte`/`lte`, nothing for `gt`/`lt`;
 *   `ne` may join it;
 * - `{ in: [...] }`: equal to any of 1 to 30 scalars (types may mix), alone;
 * - `{ ne: x }`: the exact complement of equality with `x` (null and missing
 *   fields included, unless `x` is null).
 * No other key: MongoDB operators such as `$gt` are refused (400).
 */
export type FilterOperators =
  | (LowerBound & UpperBound & { ne?: FilterScalar; in?: never } & SomeOperator)
  | { in: readonly [FilterScalar, ...FilterScalar[]]; gt?: never; gte?: never; lt?: never; lte?: never; ne?: never };

/** A filter: field (a dotted path into the value) -> a scalar it must equal, or operators. */
export type Filter = Record<string, FilterScalar | FilterOperators>;

/** Sort direction: 1 ascending, -1 descending. */
export type SortOrder = 1 | -1;

export interface QueryOptions extends CallOptions {
  /**
   * Field (a dotted path into the value, such as `a.b`) -> the scalar it
   * must equal (null also matches a missing field), or an operator object
   * such as `{ gte: '2025-01-01', lt: '2025-02-01' }`, `{ in: ['pro', 'team'] }`
   * or `{ ne: 'free' }` (see FilterOperators). Every field must match.
   */
  filter?: Filter;
  /**
   * Field -> 1 or -1, first field first, ties broken by key. An object keeps
   * its fields' order except integer-like names (`"0"`), which JavaScript
   * moves first; an array of `[field, order]` pairs keeps any order.
   */
  sort?: Record<string, SortOrder> | ReadonlyArray<readonly [string, SortOrder]>;
  /** Page size: default 20, at most 1000. */
  limit?: number;
  /**
   * The `nextCursor` of the previous page. A cursor carries its query's
   * filter and sort: the engine ignores `filter` and `sort` sent with it.
   */
  cursor?: string | null;
}

/** A document: its key and value. */
export interface DocItem<T = any> {
  key: string;
  value: T;
}

export interface QueryResult<T = any> {
  items: DocItem<T>[];
  /** Fetches the next page through `cursor`; null on the last page. */
  nextCursor: string | null;
}

/** One operation of `collection.batch`. */
export type BatchOp<T = unknown> =
  | { op: 'set'; key: string; value: T }
  | { op: 'delete'; key: string };

/** The outcome of one batch operation, in the order sent. */
export interface BatchOpResult {
  key: string;
  op: 'set' | 'delete';
  ok: boolean;
  /** The error code when the operation failed, such as `too_large`. */
  error?: string;
  /** Why it failed, for a person. */
  message?: string;
}

export interface BatchResult {
  succeeded: number;
  failed: number;
  results: BatchOpResult[];
}

/**
 * A document's version: its ETag header, an opaque string in double quotes
 * that changes on every write of the document.
 */
export type DocEtag = string;

/** A document's value and version, as `getWithEtag` answers. */
export interface DocWithEtag<T = any> {
  value: T;
  etag: DocEtag;
}

/**
 * No condition: a plain `set`, `delete` or `patch`. A condition given as
 * `undefined` or `null` is refused before sending (status 0,
 * `invalid_request`) rather than read as "no condition": leave it out.
 */
export interface NoDocCondition {
  ifMatch?: undefined;
  ifNoneMatch?: undefined;
}

/** Options of a `delete` or `patch` of one version. */
export interface DocIfMatchOptions extends CallOptions {
  /** Apply only when the document exists with this etag (as `getWithEtag` answered it), or `'*'`: exists at all. */
  ifMatch: DocEtag;
  ifNoneMatch?: undefined;
}

/** Options of a conditional `set`: `ifMatch` or `ifNoneMatch`, not both. */
export type DocSetIfOptions = CallOptions & (
  | { ifMatch: DocEtag; ifNoneMatch?: undefined }
  /** Create only: write when no document exists at the key. */
  | { ifMatch?: undefined; ifNoneMatch: '*' }
);

/** Options of `set`, conditional or not. */
export type DocSetOptions = (CallOptions & NoDocCondition) | DocSetIfOptions;

/**
 * A JSON Merge Patch (RFC 7396) of a document of type `T`: an object whose
 * members replace fields (objects merge recursively, arrays are replaced
 * whole) and whose `null` members remove fields, which `T` must then have
 * as optional. Any object for an untyped collection.
 */
export type DocPatch<T> = unknown extends T
  ? { [field: string]: unknown }
  : T extends readonly unknown[] ? never
  : T extends object ? { [K in keyof T]?: MergePatchMember<T[K], {} extends Pick<T, K> ? true : false> }
  : never;

/**
 * A member of a merge patch: the field's new value, an object merging into
 * it, or `null`, which removes the field, and so only for an optional one
 * (or a key of a record); a field typed `x | null` cannot be set to null by
 * a patch: use `set`.
 */
export type MergePatchMember<V, Optional extends boolean> =
  | (Optional extends true ? null : never)
  | (Exclude<V, null> extends infer W ? W extends readonly unknown[] ? W : W extends object ? DocPatch<W> : W : never);

/** sdk.storage.db. */
export interface Db {
  /**
   * A handle on the collection `name` in a tier (default private); it sends
   * nothing. Names are 1 to 64 characters of letters, digits, `_`, `.` and
   * `-`, starting with a letter or digit (checked by the engine).
   * `T` types the values read back; it is not checked at run time.
   */
  collection<T = any>(name: string, options?: { tier?: Tier }): Collection<T>;
}

/**
 * A named set of JSON documents in one tier. Keys are 1 to 512 bytes of
 * UTF-8 without control characters; `.` and `..` cannot be sent by fetch and
 * are refused before sending.
 */
export interface Collection<T = any> {
  /**
   * Follows the collection's changes as they happen (Server-Sent Events
   * over fetch). Reconnects with Last-Event-ID and a fresh token from the
   * token function when the connection drops or the token expires; ends with
   * a CpodError when the app loses the scope.
   *
   * ```ts
   * for await (const ev of messages.watch({ signal })) console.log(ev.type, ev.key, ev.value)
   * const h = messages.watch({}, (ev) => render(ev)); h.close()
   * ```
   */
  watch(options?: WatchOptions): AsyncIterable<ChangeEvent>;
  watch(options: WatchOptions | undefined, onEvent: (event: ChangeEvent) => void | Promise<void>): WatchHandle;
  /** Stores `value` (anything JSON.stringify accepts) under `key`, replacing any document there. */
  set(key: string, value: T, options?: CallOptions & NoDocCondition): Promise<void>;
  /**
   * Stores `value` under `key` only when the condition holds: `ifMatch`, the
   * document exists with that etag (`'*'`: with any); `ifNoneMatch: '*'`, it
   * does not exist. The check and the write are one atomic step on the
   * engine. Resolves to `true` when it wrote, `false` when the condition did
   * not hold (the engine's 412 `conflict`; nothing was written). Any other
   * failure rejects.
   */
  set(key: string, value: T, options: DocSetIfOptions): Promise<boolean>;
  /** The value at `key`, or null when there is none (a stored JSON null reads as null too). */
  get(key: string, options?: CallOptions): Promise<T | null>;
  /** Whether a document is stored at `key` (a HEAD: the value is not transferred). */
  exists(key: string, options?: CallOptions): Promise<boolean>;
  /**
   * The value at `key` with its etag, or null when there is none. The etag
   * changes on every write of the document: pass it as `ifMatch` to write
   * only the version read (optimistic concurrency).
   */
  getWithEtag(key: string, options?: CallOptions): Promise<DocWithEtag<T> | null>;
  /** Removes the document; a missing one is not an error. */
  delete(key: string, options?: CallOptions & NoDocCondition): Promise<void>;
  /**
   * Removes the document only when it exists with the etag `ifMatch`
   * (`'*'`: with any), atomically: resolves to `true` when it did, `false`
   * when it was missing or had another version (the engine's 412
   * `conflict`). Any other failure rejects.
   */
  delete(key: string, options: DocIfMatchOptions): Promise<boolean>;
  /**
   * Merges `patch` into the document at `key` as a JSON Merge Patch (RFC
   * 7396), atomically on the engine, and resolves to the merged value: a
   * member replaces that field (objects merge recursively), a member set to
   * `null` removes it, fields the patch does not name are kept, so
   * concurrent patches of different fields all survive. A missing document
   * rejects with 404 `not_found`. The patch must be an object (refused
   * before sending otherwise): use `set` to replace the whole value.
   */
  patch(key: string, patch: DocPatch<T>, options?: CallOptions & NoDocCondition): Promise<T>;
  /**
   * `patch` applied only to the version `ifMatch` (`'*'`: any existing
   * one): resolves to the merged value, or `false` when the document was
   * missing or had another version (the engine's 412 `conflict`; nothing was
   * written). A merged value is always an object, never `false`.
   */
  patch(key: string, patch: DocPatch<T>, options: DocIfMatchOptions): Promise<T | false>;
  /** The documents matching `filter`, in `sort` order, one page at a time. */
  query(options?: QueryOptions): Promise<QueryResult<T>>;
  /** How many documents match `filter` (the rules of `query`; none counts them all). */
  count(filter?: Filter, options?: CallOptions): Promise<number>;
  /**
   * Applies `ops` in order, each on its own (one failing does not stop or
   * undo the others); at most 500. Per-operation failures are in `results`.
   */
  batch(ops: ReadonlyArray<BatchOp<T>>, options?: CallOptions): Promise<BatchResult>;
}

// ---------------------------------------------------------------- kv

/**
 * Options of `kv.set`. At most one condition: `ifAbsent: true` or `ifValue`.
 * A condition given as `undefined` is refused before sending (status 0,
 * `invalid_request`) rather than read as "no condition": leave it out.
 */
export interface KvSetOptions extends CallOptions {
  /**
   * Seconds until the key expires (1 s to 1 year, rounded up to whole
   * seconds); default (or 0) none. Every set replaces the TTL, conditional
   * ones too: refreshing a lock with `ifValue` must pass its `ttl` again.
   */
  ttl?: number;
  /** Write only when the key is missing (a lock's acquire); atomic on the engine. */
  ifAbsent?: boolean;
  /**
   * Write only when the key holds exactly this string, the text `kv.get`
   * answers (compare-and-set); atomic on the engine. `null`, which `kv.get`
   * answers for a missing key, means only when the key is missing, as
   * `ifAbsent: true`.
   */
  ifValue?: string | null;
}

/** Options of an unconditional `kv.set`, which always writes. */
export type KvSetAlwaysOptions = KvSetOptions & { ifAbsent?: false; ifValue?: undefined };

/** Options of a conditional `kv.set`: `ifAbsent: true`, or `ifValue`, not both. */
export type KvSetIfOptions = KvSetOptions & (
  | { ifAbsent: true; ifValue?: undefined }
  | { ifAbsent?: false; ifValue: string | null }
);

/** Options of a conditional `kv.del`. */
export interface KvDelIfOptions extends CallOptions {
  /** Remove the key only when it holds exactly this string (a lock's release); atomic on the engine. */
  ifValue: string;
}

/**
 * sdk.storage.kv: string values under keys of 1 to 512 bytes of UTF-8 (a
 * `/` in a key is just a character; `.` and `..` are refused before sending).
 * Works in the private tier; `withTier` gives another. Conditional `set` and
 * `del` make locks and compare-and-set:
 *
 * ```ts
 * const id = crypto.randomUUID()           // this holder's lock value
 * if (await kv.set('lock:report', id, { ttl: 30, ifAbsent: true })) {
 *   await kv.set('lock:report', id, { ttl: 30, ifValue: id })   // refresh: false once lost
 *   await kv.del('lock:report', { ifValue: id })                // release only your own lock
 * }
 * ```
 */
export interface Kv {
  /** The same store in another tier; this one is unchanged. */
  withTier(tier: Tier): Kv;
  /** Follows this tier's kv changes (see `Collection.watch`); a set's value is the stored string, a TTL change has none. */
  watch(options?: WatchOptions): AsyncIterable<ChangeEvent>;
  watch(options: WatchOptions | undefined, onEvent: (event: ChangeEvent) => void | Promise<void>): WatchHandle;
  /**
   * Stores `value` under `key`, replacing any value and TTL, and resolves to
   * `true`. A string is stored as it is, anything else as its compact JSON
   * text.
   */
  set(key: string, value: unknown, options?: KvSetAlwaysOptions): Promise<true>;
  /**
   * Stores `value` under `key` only when the condition holds (`ifAbsent`:
   * the key is missing; `ifValue`: it holds exactly that string), the check
   * and the write one atomic step on the engine. Resolves to `true` when it
   * wrote, `false` when the condition did not hold (the engine's 412
   * `conflict`; nothing was written). Any other failure rejects.
   */
  set(key: string, value: unknown, options: KvSetIfOptions): Promise<boolean>;
  /** `ifAbsent` as a run-time flag: `true` when written, `false` when the key existed. */
  set(key: string, value: unknown, options: KvSetOptions & { ifValue?: undefined }): Promise<boolean>;
  /** The value (always a string: parse it if needed), or null when missing or expired. */
  get(key: string, options?: CallOptions): Promise<string | null>;
  /** Whether `key` holds a value. */
  exists(key: string, options?: CallOptions): Promise<boolean>;
  /**
   * Adds `by` (default 1) to the integer at `key` and returns the result; a
   * missing key counts from 0 and the TTL is kept. A value that is not an
   * integer, or an int64 overflow, rejects with 409 `not_integer`. A number
   * result beyond 2^53 rejects with a RangeError: pass a bigint to get one.
   */
  incr(key: string, by?: number, options?: CallOptions): Promise<number>;
  incr(key: string, by: bigint, options?: CallOptions): Promise<bigint>;
  /** Seconds before `key` expires, -1 when it has no TTL, null when it is missing. */
  ttl(key: string, options?: CallOptions): Promise<number | null>;
  /** Removes `key`; a missing key is not an error. */
  del(key: string, options?: CallOptions & { ifValue?: undefined }): Promise<void>;
  /**
   * Removes `key` only when it holds exactly `ifValue`, atomically: resolves
   * to `true` when it did, `false` when the key was missing or held another
   * value (the engine's 412 `conflict`). Any other failure rejects.
   */
  del(key: string, options: KvDelIfOptions): Promise<boolean>;
  /**
   * Sets the seconds `key` has left to `ttl` (1 s to 1 year, rounded up to
   * whole seconds), keeping its value, or removes its TTL when `ttl` is
   * `null`. Resolves to `true`, or `false` when the key is missing. Not
   * conditional: to extend a lock only while you hold it, use `set` with
   * `ifValue` and `ttl`.
   */
  expire(key: string, ttl: number | null, options?: CallOptions): Promise<boolean>;
}

// ---------------------------------------------------------------- errors

/** The engine's error codes (the wire contract's). */
export type CpodErrorCode =
  | 'invalid_request'
  | 'invalid_token'
  | 'invalid_scope'
  | 'insufficient_scope'
  | 'user_required'
  | 'not_found'
  | 'unknown_endpoint'
  | 'conflict'
  | 'too_large'
  | 'invalid_cursor'
  | 'not_integer'
  | 'expired'
  | 'invalid_signature'
  | 'backend_unavailable'
  | 'internal'
  /** 507: the server is out of space (a full disk); the write stored nothing. No Retry-After. */
  | 'insufficient_storage'
  /**
   * 507: the write would take the tenant over one of its quotas (bytes or
   * count of files, documents or kv, set by the server's operator); it stored
   * nothing. No Retry-After: delete something, or ask for a higher quota.
   * Same status as `insufficient_storage`: tell them apart by `code`.
   */
  | 'quota_exceeded'
  | 'rate_limited';

/**
 * The one error of the SDK: every non-2xx answer of the engine, and every
 * call refused before sending (status 0, code `invalid_request`). Failures
 * that never reach the engine (network, abort) are fetch's own errors.
 *
 * ```ts
 * try { await kv.incr('name') } catch (e) {
 *   if (e instanceof CpodError && e.code === 'not_integer') ...
 * }
 * ```
 */
export declare class CpodError extends Error {
  constructor(init: { status: number; code: string; message: string; requestId?: string | null; retryAfter?: number | null });
  readonly name: 'CpodError';
  /** HTTP status; 0 when the SDK refused the call before sending it. */
  readonly status: number;
  /** The contract's error code; '' when the answer carried none (a proxy's page). */
  readonly code: CpodErrorCode | (string & {});
  /** The engine's explanation, for a person (`message` adds status and code to it). */
  readonly detail: string;
  /** X-Request-Id of the answer: the engine logs the call under it. */
  readonly requestId: string | null;
  /**
   * Seconds to wait before retrying, from Retry-After: sent with 503
   * `backend_unavailable`, and with 429 `rate_limited` (the tenant, or its
   * app within the tenant, is over the server's rate limit; nothing was done).
   */
  readonly retryAfter: number | null;
}
