// @ts-check
// The seed's snippet "Files: Read" (shared/seed/storage-sdk.md, lines 64-65),
// verbatim between the seed:begin and seed:end lines; test/seed.test.js
// runs it against the engine and checks it still matches the seed.
import { CpodClient } from '@cpod/sdk'
const sdk = CpodClient.fromEnv()
// --- seed:begin
const stream = await sdk.storage.files.read('config/settings.json')
const text = await new Response(stream).text()
// --- seed:end
export { stream, text }
