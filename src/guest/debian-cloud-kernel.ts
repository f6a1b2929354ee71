// The stock Debian cloud kernel as a guest: fetched with apt-get, unpacked to an uncompressed vmlinux (PVH entry).
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TypevisorError } from '../base/errors.js';
import { cacheRoot } from './cache-dir.js';
import { buildDebianCloudInitramfs } from './debian-cloud-initramfs.js';

export interface DebianCloudKernel {
  version: string;
  vmlinux: string;
  vmlinuz: string;
  /** busybox, the virtio modules and Typevisor's /init (see debian-cloud-initramfs.ts). */
  initramfs: string;
  dir: string;
}

/** Typevisor's guest/init in the package (this file is dist/src/guest/debian-cloud-kernel.js). */
const GUEST_INIT = fileURLToPath(new URL('../../../guest/init', import.meta.url));
const BUSYBOX = '/bin/busybox';

function ensureBusybox(log: (line: string) => void): void {
  if (existsSync(BUSYBOX)) return;
  log('installing busybox-static (for the initramfs) with apt-get');
  run('apt-get', ['install', '-y', '-qq', 'busybox-static'], 'apt-get install busybox-static');
}

/** Decompressors by the payload's magic bytes (what the kernel's scripts/extract-vmlinux knows). */
const DECOMPRESSORS: { magic: number[]; command: string[]; pkg: string }[] = [
  { magic: [0x02, 0x21, 0x4c, 0x18], command: ['lz4', '-dc'], pkg: 'lz4' },
  { magic: [0xfd, 0x37, 0x7a, 0x58, 0x5a], command: ['xz', '-dc'], pkg: 'xz-utils' },
  { magic: [0x28, 0xb5, 0x2f, 0xfd], command: ['zstd', '-dc'], pkg: 'zstd' },
  { magic: [0x1f, 0x8b], command: ['gzip', '-dc'], pkg: 'gzip' },
];

function run(cmd: string, args: string[], what: string, opts: { cwd?: string; input?: Uint8Array } = {}): Buffer {
  try {
    return execFileSync(cmd, args, { cwd: opts.cwd, input: opts.input, stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 1 << 30 });
  } catch (e) {
    const stderr = (e as { stderr?: Buffer }).stderr?.toString().trim() ?? '';
    throw new TypevisorError('GUEST_BUILD_FAILED', `${what} failed (${cmd} ${args.join(' ')}): ${stderr || String(e)}`, { cause: e });
  }
}

/** The versioned package linux-image-cloud-amd64 depends on, e.g. linux-image-6.1.0-56-cloud-amd64. */
function resolvePackage(): string {
  const out = run('apt-cache', ['depends', 'linux-image-cloud-amd64'], 'looking up the Debian cloud kernel').toString();
  const m = /Depends: (linux-image-[0-9][^\s]*-cloud-amd64)/.exec(out);
  if (!m) {
    run('apt-get', ['update', '-qq'], 'apt-get update');
    const again = /Depends: (linux-image-[0-9][^\s]*-cloud-amd64)/.exec(
      run('apt-cache', ['depends', 'linux-image-cloud-amd64'], 'looking up the Debian cloud kernel').toString());
    if (!again) throw new TypevisorError('GUEST_BUILD_FAILED', 'apt knows no linux-image-cloud-amd64 — is this a Debian host with its main archive?');
    return again[1]!;
  }
  return m[1]!;
}

/** Extracts the compressed payload of a bzImage (boot protocol ≥ 2.08: payload_offset/length) and decompresses it. */
export function extractVmlinux(bzImage: Uint8Array): Buffer {
  const v = new DataView(bzImage.buffer, bzImage.byteOffset, bzImage.byteLength);
  const setupSects = bzImage[0x1f1] || 4;
  const start = (setupSects + 1) * 512 + v.getUint32(0x248, true);
  const payload = bzImage.subarray(start, start + v.getUint32(0x24c, true));
  const d = DECOMPRESSORS.find((x) => x.magic.every((b, i) => payload[i] === b));
  if (!d) throw new TypevisorError('KERNEL_FORMAT', 'unknown compression of the kernel payload');
  // Decompressors complain about the kernel's appended size field; the output is complete anyway.
  try {
    return execFileSync(d.command[0]!, d.command.slice(1), { input: payload, maxBuffer: 1 << 30, stdio: ['pipe', 'pipe', 'ignore'] });
  } catch (e) {
    const out = (e as { stdout?: Buffer }).stdout;
    if (out && out.length > 0) return out;
    throw new TypevisorError('GUEST_BUILD_FAILED', `${d.command[0]} could not decompress the kernel — install Debian's ${d.pkg}`, { cause: e });
  }
}

function cachedInitSha(dir: string): string | undefined {
  try {
    return (JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as { initSha256?: string }).initSha256;
  } catch {
    return undefined;
  }
}

/** Downloads (once) and unpacks Debian's cloud kernel and builds its initramfs; idempotent, safe against interruption. */
export function fetchDebianCloudKernel(log: (line: string) => void = () => undefined): DebianCloudKernel {
  const pkg = resolvePackage();
  const version = pkg.replace(/^linux-image-/, '');
  const dir = join(cacheRoot(), 'debian-cloud', version);
  const result = { version, dir, vmlinux: join(dir, 'vmlinux'), vmlinuz: join(dir, 'vmlinuz'), initramfs: join(dir, 'initramfs.cpio') };
  // The initramfs carries guest/init: a cached one built from another /init is rebuilt.
  const initSha256 = createHash('sha256').update(readFileSync(GUEST_INIT)).digest('hex');
  if (existsSync(result.initramfs) && cachedInitSha(dir) === initSha256) return result;
  ensureBusybox(log);
  mkdirSync(join(cacheRoot(), 'debian-cloud'), { recursive: true });
  const work = mkdtempSync(join(cacheRoot(), 'debian-cloud', `.${version}-`));
  try {
    log(`downloading ${pkg} with apt-get`);
    run('apt-get', ['download', '-qq', pkg], `apt-get download ${pkg}`, { cwd: work });
    const deb = readdirSync(work).find((f) => f.endsWith('.deb'));
    if (!deb) throw new TypevisorError('GUEST_BUILD_FAILED', `apt-get download ${pkg} produced no .deb`);
    run('dpkg-deb', ['-x', join(work, deb), join(work, 'root')], 'unpacking the kernel package');
    const boot = join(work, 'root', 'boot');
    const vmlinuzName = readdirSync(boot).find((f) => f.startsWith('vmlinuz-'));
    if (!vmlinuzName) throw new TypevisorError('GUEST_BUILD_FAILED', `${pkg} has no /boot/vmlinuz-*`);
    const out = join(work, 'out');
    mkdirSync(out);
    const bz = readFileSync(join(boot, vmlinuzName));
    writeFileSync(join(out, 'vmlinuz'), bz);
    log('decompressing the kernel into an uncompressed vmlinux (PVH entry)');
    writeFileSync(join(out, 'vmlinux'), extractVmlinux(bz));
    log('building the initramfs: busybox, the virtio modules, Typevisor\'s /init');
    const initramfs = buildDebianCloudInitramfs({ root: join(work, 'root'), version, busybox: BUSYBOX, init: GUEST_INIT });
    writeFileSync(join(out, 'initramfs.cpio'), initramfs.cpio);
    const manifest = { package: pkg, version, created: new Date().toISOString(), initSha256, modules: initramfs.modules };
    writeFileSync(join(out, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
    rmSync(dir, { recursive: true, force: true });
    renameSync(out, dir);
    return result;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
