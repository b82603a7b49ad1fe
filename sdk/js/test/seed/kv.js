// @ts-check
// The seed's snippet "Key-value" (shared/seed/storage-sdk.md, lines 150-171),
// verbatim between the seed:begin and seed:end lines; test/seed.test.js
// runs it against the engine and checks it still matches the seed.
import { CpodClient } from '@cpod/sdk'
const sdk = CpodClient.fromEnv()
// --- seed:begin
const kv = sdk.storage.kv
 
// Set with TTL (seconds)
await kv.set('session:abc123', { userId: 'usr-xxx', plan: 'pro' }, { ttl: 3600 })
 
// Get
const session = await kv.get('session:abc123')
// → '{"userId":"usr-xxx","plan":"pro"}'  (always a string — parse if needed)
 
// Exists check
const alive = await kv.exists('session:abc123')  // → true
 
// Atomic counter
await kv.set('counter:api-calls', '0')
const count = await kv.incr('counter:api-calls')      // → 1
const count2 = await kv.incr('counter:api-calls', 5)  // → 6
 
// TTL check
const remaining = await kv.ttl('session:abc123')  // → seconds left
 
// Delete
await kv.del('session:abc123')
// --- seed:end
export { session, alive, count, count2, remaining }
