// @ts-check
// @cpod/sdk: cpod storage for JavaScript and TypeScript. Types: ../index.d.ts.
export { CpodClient } from './client.js';
export { CpodError } from './errors.js';
export { uploadToSignedUrl } from './files.js';
