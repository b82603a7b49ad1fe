// @ts-check
// The seed's snippet "Files: List & Delete" (shared/seed/storage-sdk.md, lines 79-84),
// verbatim between the seed:begin and seed:end lines; test/seed.test.js
// runs it against the engine and checks it still matches the seed.
import { CpodClient } from '@cpod/sdk'
const sdk = CpodClient.fromEnv()
// --- seed:begin
const listing = await sdk.storage.files.list('exports/', { limit: 50 })
for (const entry of listing.items) {
  console.log(entry.key, entry.size, entry.lastModified)
}
 
await sdk.storage.files.delete('exports/old-report.pdf')
// --- seed:end
export { listing }
