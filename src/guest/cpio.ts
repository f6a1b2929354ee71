// A writer (and reader, for checks) of the "newc" cpio format the Linux kernel unpacks as an
// initramfs (Documentation/driver-api/early-userspace/buffer-format.rst).
import { TypevisorError } from '../base/errors.js';
import { concatBytes } from '../base/bytes.js';

export type CpioEntry =
  | { kind: 'dir'; path: string; mode?: number }
  | { kind: 'file'; path: string; data: Uint8Array; mode?: number }
  | { kind: 'symlink'; path: string; target: string };

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;
const MAGIC = '070701';
const TRAILER = 'TRAILER!!!';

const hex8 = (n: number): string => n.toString(16).padStart(8, '0');
const pad4 = (n: number): number => (4 - (n % 4)) % 4;

/** The archive: entries in the order given (parents before children), owned by root, then the trailer. */
export function writeCpio(entries: readonly CpioEntry[]): Uint8Array {
  const parts: Uint8Array[] = [];
  const enc = new TextEncoder();
  let ino = 1;
  const record = (path: string, mode: number, data: Uint8Array): void => {
    if (path.startsWith('/') || path.split('/').includes('..')) {
      throw new TypevisorError('INTERNAL', `cpio path '${path}' must be relative and stay inside the archive`);
    }
    const name = enc.encode(`${path}\0`);
    const fields = [ino++, mode, 0, 0, mode & S_IFDIR ? 2 : 1, 0, data.length, 0, 0, 0, 0, name.length, 0];
    const header = enc.encode(MAGIC + fields.map(hex8).join(''));
    parts.push(header, name, new Uint8Array(pad4(header.length + name.length)), data, new Uint8Array(pad4(data.length)));
  };
  for (const e of entries) {
    if (e.kind === 'dir') record(e.path, S_IFDIR | (e.mode ?? 0o755), new Uint8Array());
    else if (e.kind === 'file') record(e.path, S_IFREG | (e.mode ?? 0o644), e.data);
    else record(e.path, S_IFLNK | 0o777, enc.encode(e.target));
  }
  record(TRAILER, 0, new Uint8Array());
  return concatBytes(parts);
}

/** Reads a newc archive back (to verify what was built); throws on anything malformed. */
export function readCpio(archive: Uint8Array): { path: string; mode: number; data: Uint8Array }[] {
  const dec = new TextDecoder();
  const out: { path: string; mode: number; data: Uint8Array }[] = [];
  let at = 0;
  for (;;) {
    if (at + 110 > archive.length) throw new TypevisorError('INTERNAL', 'cpio archive truncated (no trailer)');
    const header = dec.decode(archive.subarray(at, at + 110));
    if (!header.startsWith(MAGIC)) throw new TypevisorError('INTERNAL', `bad cpio magic at offset ${at}`);
    const field = (i: number): number => parseInt(header.slice(6 + 8 * i, 14 + 8 * i), 16);
    const mode = field(1);
    const size = field(6);
    const nameSize = field(11);
    const nameEnd = at + 110 + nameSize;
    const path = dec.decode(archive.subarray(at + 110, nameEnd - 1));
    const dataStart = nameEnd + pad4(110 + nameSize);
    if (dataStart + size > archive.length) throw new TypevisorError('INTERNAL', `cpio entry ${path} runs past the end`);
    if (path === TRAILER) return out;
    out.push({ path, mode, data: archive.subarray(dataStart, dataStart + size) });
    at = dataStart + size + pad4(size);
  }
}
