// npm test: builds ./httpserver once, then runs every test file with Node's
// built-in runner, which prints its summary (# tests, # pass, # fail) last.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildServer, pkgDir, serverBinEnv } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'cpod-sdk-bin-'));
let status = 1;
try {
  const bin = buildServer(dir);
  const files = process.argv.length > 2
    ? process.argv.slice(2)
    : readdirSync(join(pkgDir, 'test')).filter((f) => f.endsWith('.test.js')).sort().map((f) => join('test', f));
  const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...files], {
    cwd: pkgDir,
    stdio: 'inherit',
    env: { ...process.env, [serverBinEnv]: bin },
  });
  status = r.status ?? 1;
} finally {
  rmSync(dir, { recursive: true, force: true });
}
process.exit(status);
