// @ts-check
// The seed's snippet "Documents: Query" (shared/seed/storage-sdk.md, lines 113-132),
// verbatim between the seed:begin and seed:end lines; test/seed.test.js
// runs it against the engine and checks it still matches the seed.
import { CpodClient } from '@cpod/sdk'
const sdk = CpodClient.fromEnv()
// --- seed:begin
const sessions = sdk.storage.db.collection('sessions')
 
const active = await sessions.query({
  filter: { status: 'active', plan: 'pro' },
  sort: { createdAt: -1 },
  limit: 20,
})
 
for (const item of active.items) {
  console.log(item.key, item.value)
}
 
// Paginate
if (active.nextCursor) {
  const page2 = await sessions.query({
    filter: { status: 'active' },
    cursor: active.nextCursor,
    limit: 20,
  })
}
// --- seed:end
export { sessions, active }
