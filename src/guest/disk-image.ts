// `typevisor image create`: root filesystem images for `run --root` and data disks for `run --disk`.
// An empty image is a sparse file with ext4 on it; `--from debian` fills it with a minimal Debian
// built by guest/build-debian-image.sh. The image appears under its name only when complete.
import { spawnSync } from 'node:child_process';
import { existsSync, renameSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { TypevisorError } from '../base/errors.js';
import { formatSize } from '../base/size.js';
import { runBuildScript } from './build-script.js';
import { GUEST_DIR } from './default-guest.js';

export const IMAGE_SOURCES = ['empty', 'debian'] as const;
export type ImageSource = (typeof IMAGE_SOURCES)[number];

/** ext4 needs room for its own metadata; below this an image is no use as a disk. */
export const MIN_IMAGE_BYTES = 16 * 2 ** 20;
/** Linux's ext4 limit with 4 KiB blocks and 32-bit block numbers is 16 TiB; stay well inside it. */
export const MAX_IMAGE_BYTES = 2 ** 44;

export interface CreateImageOptions {
  path: string;
  sizeBytes: number;
  from: ImageSource;
}

/** Creates the image; progress lines go to `log`. Nothing is left behind on failure. */
export async function createImage(opts: CreateImageOptions, log: (line: string) => void = () => undefined): Promise<string> {
  const path = resolve(opts.path);
  checkTarget(path, opts.sizeBytes);
  if (opts.from === 'debian') {
    return runBuildScript({
      what: `the Debian image ${path}`, script: join(GUEST_DIR, 'build-debian-image.sh'), args: [path, String(opts.sizeBytes)],
      failurePrefix: 'image build failed:',
    }, log);
  }
  const partial = `${path}.partial-${process.pid}`;
  try {
    writeFileSync(partial, '', { flag: 'wx' });
    truncateSync(partial, opts.sizeBytes);
    const mkfs = spawnSync('mkfs.ext4', ['-q', '-F', '-L', 'typevisor-data', partial], {
      encoding: 'utf8', env: { ...process.env, PATH: `${process.env['PATH'] ?? ''}:/usr/sbin:/sbin` },
    });
    if (mkfs.error) throw new TypevisorError('INVALID_ARGUMENT', 'mkfs.ext4 is not installed — run: apt-get install e2fsprogs', { cause: mkfs.error });
    if (mkfs.status !== 0) throw new TypevisorError('GUEST_BUILD_FAILED', `mkfs.ext4 failed: ${mkfs.stderr.trim()}`);
    if (existsSync(path)) throw new TypevisorError('INVALID_ARGUMENT', `${path} appeared while the image was being made; it was left alone`);
    renameSync(partial, path);
    log(`created ${path}: ${formatSize(opts.sizeBytes)} ext4 (sparse: it takes host space only as it fills)`);
    return path;
  } finally {
    rmSync(partial, { force: true });
  }
}

/** The checks that need no work done: a free name in a writable directory, a sane size. */
function checkTarget(path: string, sizeBytes: number): void {
  if (existsSync(path)) throw new TypevisorError('INVALID_ARGUMENT', `${path} already exists — remove it or choose another name (images are never overwritten)`);
  const dir = dirname(path);
  let isDir = false;
  try {
    isDir = statSync(dir).isDirectory();
  } catch {
    // Reported below.
  }
  if (!isDir) throw new TypevisorError('INVALID_ARGUMENT', `cannot create ${path}: the directory ${dir} does not exist`);
  if (sizeBytes < MIN_IMAGE_BYTES) throw new TypevisorError('INVALID_ARGUMENT', `--size ${formatSize(sizeBytes)} is too small for an ext4 image — give at least ${formatSize(MIN_IMAGE_BYTES)}`);
  if (sizeBytes > MAX_IMAGE_BYTES) throw new TypevisorError('INVALID_ARGUMENT', `--size ${formatSize(sizeBytes)} is too large — at most ${formatSize(MAX_IMAGE_BYTES)}`);
  if (sizeBytes % 512 !== 0) throw new TypevisorError('INVALID_ARGUMENT', `--size ${sizeBytes} is not a whole number of 512-byte sectors`);
}
