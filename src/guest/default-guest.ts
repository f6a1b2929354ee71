// The default guest: built (once, cached) by guest/build-default-guest.sh from Debian packages.
import { accessSync, constants, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TypevisorError } from '../base/errors.js';
import { fetchDebianCloudKernel } from './debian-cloud-kernel.js';
import { cacheRoot } from './cache-dir.js';
import { runBuildScript } from './build-script.js';

export interface GuestAssets {
  name: string;
  kernel: string;
  initrd?: string | undefined;
}

/** guest/ in the package (this file is dist/src/guest/default-guest.js). */
export const GUEST_DIR = fileURLToPath(new URL('../../../guest/', import.meta.url));

export const GUEST_NAMES = ['default', 'debian-cloud'] as const;
export type GuestName = (typeof GUEST_NAMES)[number];

/** Builds the default guest if needed (progress lines go to `log`) and returns its files. */
export async function ensureDefaultGuest(log: (line: string) => void = () => undefined): Promise<GuestAssets> {
  const script = join(GUEST_DIR, 'build-default-guest.sh');
  if (!existsSync(script)) throw new TypevisorError('GUEST_BUILD_FAILED', `the guest recipe ${script} is missing from this installation`);
  ensureWritableCache();
  const dir = await runBuildScript({ what: 'the default guest', script, failurePrefix: 'guest build failed:' }, log);
  return { name: 'default', kernel: join(dir, 'vmlinux'), initrd: join(dir, 'initramfs.cpio') };
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
