// @ts-check
// The seed's snippet "Files: Write" (shared/seed/storage-sdk.md, lines 38-60),
// verbatim between the seed:begin and seed:end lines; test/seed.test.js
// runs it against the engine and checks it still matches the seed.
import { imageBuffer, svgBuffer } from './fixtures.js'
// --- seed:begin
import { CpodClient } from '@cpod/sdk'
const sdk = CpodClient.fromEnv()
 
const data = Buffer.from('{"hello":"world"}')
 
// Private (default) — only this app can read it
const result = await sdk.storage.files.write('config/settings.json', data, {
  contentType: 'application/json',
})
// result.key  → "config/settings.json"
// result.tier → "private"
 
// User-scoped — any app this user uses can read it
await sdk.storage.files.write('avatar.png', imageBuffer, {
  contentType: 'image/png',
  tier: 'user',
})
 
// Tenant shared — all apps in this tenant can read it
await sdk.storage.files.write('brand/logo.svg', svgBuffer, {
  contentType: 'image/svg+xml',
  tier: 'shared',
})
// --- seed:end
export { result }
