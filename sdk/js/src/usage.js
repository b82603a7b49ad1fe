// @ts-check

/** @typedef {import('./client.js').Transport} Transport */
/** @typedef {import('../index.js').TierOptions} TierOptions */
/** @typedef {import('../index.js').Usage} Usage */

/**
 * usage resolves to what the caller's location holds in a tier, as
 * sdk.storage.usage: this app's private data (the default), the token's
 * user's data across apps (tier 'user'), or the tenant's shared data (tier
 * 'shared'). Bytes are those of the values only (file contents, documents'
 * JSON text, kv values' text); names are not counted. It needs the tier's
 * read scope.
 * @param {Transport} t
 * @param {TierOptions} [options]
 * @returns {Promise<Usage>}
 */
export async function usage(t, options = {}) {
  const out = await t.json('GET', '/v1/storage/usage', { query: { tier: options.tier }, signal: options.signal });
  return { files: out.files, documents: out.documents, kv: out.kv };
}
