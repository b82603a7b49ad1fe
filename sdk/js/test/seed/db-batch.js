// @ts-check
// The seed's snippet "Documents: Batch" (shared/seed/storage-sdk.md, lines 136-144),
// verbatim between the seed:begin and seed:end lines; test/seed.test.js
// runs it against the engine and checks it still matches the seed.
import { CpodClient } from '@cpod/sdk'
const sdk = CpodClient.fromEnv()
// --- seed:begin
const cache = sdk.storage.db.collection('cache')
 
const result = await cache.batch([
  { op: 'set', key: 'user:123', value: { name: 'Alice', plan: 'pro' } },
  { op: 'set', key: 'user:456', value: { name: 'Bob', plan: 'free' } },
  { op: 'delete', key: 'user:999' },
])
// result.succeeded → 3
// result.failed    → 0
// --- seed:end
export { result }
