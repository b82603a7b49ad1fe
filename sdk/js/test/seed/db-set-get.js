// @ts-check
// The seed's snippet "Documents: Set & Get" (shared/seed/storage-sdk.md, lines 94-109),
// verbatim between the seed:begin and seed:end lines; test/seed.test.js
// runs it against the engine and checks it still matches the seed.
import { CpodClient } from '@cpod/sdk'
const sdk = CpodClient.fromEnv()
// --- seed:begin
const prefs = sdk.storage.db.collection('preferences')
 
// Write
await prefs.set('theme', { mode: 'dark', accent: 'purple', fontSize: 14 })
 
// Read
const theme = await prefs.get('theme')
// → { mode: 'dark', accent: 'purple', fontSize: 14 }
 
// Not found → null
const missing = await prefs.get('does-not-exist')
// → null
 
// Per-user preferences (user tier)
const userPrefs = sdk.storage.db.collection('preferences', { tier: 'user' })
await userPrefs.set('layout', { sidebar: 'collapsed' })
// --- seed:end
export { prefs, theme, missing, userPrefs }
