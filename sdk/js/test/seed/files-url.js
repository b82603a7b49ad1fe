// @ts-check
// The seed's snippet "Files: Presigned URL" (shared/seed/storage-sdk.md, lines 71-75),
// verbatim between the seed:begin and seed:end lines; test/seed.test.js
// runs it against the engine and checks it still matches the seed.
import { CpodClient } from '@cpod/sdk'
const sdk = CpodClient.fromEnv()
// --- seed:begin
const url = await sdk.storage.files.url('exports/report.pdf', {
  expiresIn: 3600,  // seconds, default 3600
  tier: 'private',
})
// Send url to the user's browser — no auth header needed to download
// --- seed:end
export { url }
