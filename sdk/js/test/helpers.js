// Test helpers: the real engine (./httpserver, built once per test run by
// test/run.js, or here when a test file runs on its own) on a free loopback
// port with a temporary data directory.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

export const pkgDir = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const repoRoot = resolve(pkgDir, '..', '..');

/** The environment variable test/run.js sets to the built server. */
export const serverBinEnv = 'CPOD_SDK_TEST_SERVER';

/**
 * buildServer builds ./httpserver into dir and returns the binary's path.
 * @param {string} dir
 */
export function buildServer(dir) {
  const bin = join(dir, 'httpserver');
  execFileSync('go', ['build', '-buildvcs=false', '-o', bin, './httpserver'], {
    cwd: repoRoot,
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  return bin;
}

/** @type {string | undefined} */
let ownBin;

/** serverBinary returns the server built by run.js, or builds one for this process. */
export function serverBinary() {
  const given = process.env[serverBinEnv];
  if (given) return given;
  if (!ownBin) {
    const dir = mkdtempSync(join(tmpdir(), 'cpod-sdk-bin-'));
    process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
    ownBin = buildServer(dir);
  }
  return ownBin;
}

/** The child's environment: none of the CPOD_* settings of this process. */
function childEnv() {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('CPOD_')) delete env[k];
  return env;
}

/**
 * startServer runs the engine with embedded backends and extra flags, and
 * waits for its "listening" log record, which names the address.
 * @param {string[]} [args]
 */
export async function startServer(args = []) {
  const bin = serverBinary();
  const dataDir = mkdtempSync(join(tmpdir(), 'cpod-sdk-data-'));
  const child = spawn(bin, ['-addr', '127.0.0.1:0', '-data-dir', dataDir, '-log-format', 'json', ...args], {
    env: childEnv(),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // Should this process die without stopping it, the server goes too.
  const reap = () => child.kill('SIGKILL');
  process.once('exit', reap);
  let log = '';
  const exited = new Promise((res) => child.once('exit', (code, sig) => res({ code, sig })));
  const addr = await new Promise((resolveAddr, reject) => {
    const timer = setTimeout(() => reject(new Error('server did not listen within 30s:\n' + log)), 30_000);
    for (const s of [child.stdout, child.stderr]) {
      createInterface({ input: s }).on('line', (line) => {
        log += line + '\n';
        try {
          const rec = JSON.parse(line);
          if (rec.msg === 'cpod storage listening') {
            clearTimeout(timer);
            resolveAddr(rec.addr);
          }
        } catch {
          // not a log record
        }
      });
    }
    exited.then(({ code, sig }) => {
      clearTimeout(timer);
      reject(new Error(`server exited (${code ?? sig}) before listening:\n${log}`));
    });
  });
  const url = 'http://' + addr;
  const adminToken = readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
  return {
    url,
    dataDir,
    /** The admin token the server generated, for /v1/oauth/apps and /v1/admin/... */
    adminToken,
    log: () => log,
    /**
     * registerApp declares an app and its scopes through the admin API.
     * @param {string} clientId
     * @param {string[]} scopes
     */
    async registerApp(clientId, scopes) {
      const res = await fetch(url + '/v1/oauth/apps', {
        method: 'POST',
        headers: { Authorization: 'Bearer ' + adminToken, 'Content-Type': 'application/json' },
        body: JSON.stringify({ client_id: clientId, name: clientId, declared_scopes: scopes, app_type: 'service' }),
      });
      if (res.status !== 201) throw new Error(`register ${clientId}: ${res.status} ${await res.text()}`);
    },
    /**
     * token mints a bearer token with `httpserver token`.
     * @param {{tenant?: string, app: string, user?: string, scopes: string[], ttl?: string}} c
     */
    token({ tenant = 't1', app, user, scopes, ttl = undefined }) {
      const args = ['token', '--data-dir', dataDir, '--tenant', tenant, '--app', app, '--scope', scopes.join(',')];
      if (user) args.push('--user', user);
      if (ttl) args.push('--ttl', ttl);
      return execFileSync(bin, args, { env: childEnv(), encoding: 'utf8' }).trim();
    },
    /** stop ends the server (SIGTERM, then SIGKILL) and removes its data. */
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(t);
      }
      process.removeListener('exit', reap);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** All six storage scopes. */
export const allScopes = ['private', 'user', 'shared'].flatMap((t) => [`storage.${t}.read`, `storage.${t}.write`]);

/**
 * findSeed returns the path of the storage spec (shared/seed/storage-sdk.md
 * beside the repository or one of its parents), or null.
 */
export function findSeed() {
  if (process.env.CPOD_SEED_FILE) return process.env.CPOD_SEED_FILE;
  let dir = repoRoot;
  for (;;) {
    const p = join(dir, 'shared', 'seed', 'storage-sdk.md');
    if (existsSync(p)) return p;
    const up = dirname(dir);
    if (up === dir) return null;
    dir = up;
  }
}
