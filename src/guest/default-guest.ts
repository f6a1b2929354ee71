// The default guest: built (once, cached) by guest/build-default-guest.sh from Debian packages.
import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TypevisorError } from '../base/errors.js';
import { fetchDebianCloudKernel } from './debian-cloud-kernel.js';
import { cacheRoot } from './cache-dir.js';

export interface GuestAssets {
  name: string;
  kernel: string;
  initrd?: string | undefined;
}

/** guest/ in the package (this file is dist/src/guest/default-guest.js). */
const GUEST_DIR = fileURLToPath(new URL('../../../guest/', import.meta.url));

export const GUEST_NAMES = ['default', 'debian-cloud'] as const;
export type GuestName = (typeof GUEST_NAMES)[number];

/** Builds the default guest if needed (progress lines go to `log`) and returns its files. */
export function ensureDefaultGuest(log: (line: string) => void = () => undefined): Promise<GuestAssets> {
  const script = join(GUEST_DIR, 'build-default-guest.sh');
  if (!existsSync(script)) throw new TypevisorError('GUEST_BUILD_FAILED', `the guest recipe ${script} is missing from this installation`);
  ensureWritableCache();
  return new Promise((resolve, reject) => {
    // Its own process group, so that an interrupt can reach every process of the build (bash
    // runs its INT trap only after the foreground make or tar has ended).
    const child = spawn('bash', [script], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let interrupted: NodeJS.Signals | undefined;
    const forwarders = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((signal) => {
      const forward = (): void => {
        interrupted = signal;
        try {
          if (child.pid !== undefined) process.kill(-child.pid, 'SIGINT');
        } catch {
          // The build has already ended.
        }
      };
      process.on(signal, forward);
      return () => process.off(signal, forward);
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      for (const line of d.toString().split('\n')) if (line.trim() !== '') log(line);
    });
    child.on('error', (e) => reject(new TypevisorError('GUEST_BUILD_FAILED', `cannot run the guest build: ${e.message}`, { cause: e })));
    child.on('close', (code) => {
      for (const remove of forwarders) remove();
      if (interrupted) {
        reject(new TypevisorError('GUEST_BUILD_FAILED', `building the default guest was interrupted (${interrupted}); its temporary files are removed and nothing was added to the cache`));
        return;
      }
      const dir = out.trim().split('\n').at(-1) ?? '';
      if (code !== 0 || dir === '') {
        const why = err.trim().split('\n').filter((l) => l.startsWith('guest build failed')).at(-1) ?? `exit status ${code}`;
        reject(new TypevisorError('GUEST_BUILD_FAILED', `building the default guest failed: ${why}`));
        return;
      }
      resolve({ name: 'default', kernel: join(dir, 'vmlinux'), initrd: join(dir, 'initramfs.cpio') });
    });
  });
}

/** Fails early, with the fix, when the cache cannot be written (instead of deep inside the build). */
function ensureWritableCache(): void {
  const dir = join(cacheRoot(), 'guest');
  try {
    mkdirSync(dir, { recursive: true });
    accessSync(dir, constants.W_OK);
  } catch (e) {
    throw new TypevisorError('GUEST_BUILD_FAILED',
      `cannot write the guest cache ${dir}: ${(e as NodeJS.ErrnoException).code ?? String(e)} — set XDG_CACHE_HOME to a writable directory`, { cause: e });
  }
}

export async function guestAssets(name: string, log: (line: string) => void = () => undefined): Promise<GuestAssets> {
  if (name === 'default') return ensureDefaultGuest(log);
  if (name === 'debian-cloud') {
    const k = fetchDebianCloudKernel(log);
    return { name, kernel: k.vmlinux, initrd: k.initramfs };
  }
  throw new TypevisorError('INVALID_ARGUMENT', `unknown guest '${name}' — choose one of: ${GUEST_NAMES.join(', ')}`);
}
