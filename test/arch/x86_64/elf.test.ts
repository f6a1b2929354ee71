// Unit tests of the ELF vmlinux parser and loader on synthetic images and corrupt files, plus real kernels when present.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { assertParsesOrFailsWith } from '../../helpers/errors.js';
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import { loadElfKernel, parseElfKernel } from '../../../src/arch/x86_64/elf.js';
import { TypevisorError } from '../../../src/base/errors.js';
import { cacheRoot } from '../../../src/guest/cache-dir.js';

interface Phdr { type: number; offset: number; vaddr: bigint; paddr: number; filesz: number; memsz: number }
interface Note { name: string; type: number; desc: Uint8Array }

/** An ELF64 x86-64 executable with the given program headers at 64 and notes at 0x200 (the first PT_NOTE's offset). */
function syntheticElf(entry: bigint, phdrs: Phdr[], notes: Note[] = []): Uint8Array {
  const f = new Uint8Array(0x1000);
  const v = new DataView(f.buffer);
  f.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  v.setUint16(16, 2, true); // ET_EXEC
  v.setUint16(18, 62, true); // EM_X86_64
  v.setBigUint64(24, entry, true);
  v.setBigUint64(32, 64n, true);
  v.setUint16(54, 56, true);
  v.setUint16(56, phdrs.length, true);
  phdrs.forEach((p, i) => {
    const o = 64 + i * 56;
    v.setUint32(o, p.type, true);
    v.setBigUint64(o + 8, BigInt(p.offset), true);
    v.setBigUint64(o + 16, p.vaddr, true);
    v.setBigUint64(o + 24, BigInt(p.paddr), true);
    v.setBigUint64(o + 32, BigInt(p.filesz), true);
    v.setBigUint64(o + 40, BigInt(p.memsz), true);
  });
  let n = 0x200;
  for (const note of notes) {
    const name = new TextEncoder().encode(`${note.name}\0`);
    v.setUint32(n, name.length, true);
    v.setUint32(n + 4, note.desc.length, true);
    v.setUint32(n + 8, note.type, true);
    f.set(name, n + 12);
    n += 12 + Math.ceil(name.length / 4) * 4;
    f.set(note.desc, n);
    n += Math.ceil(note.desc.length / 4) * 4;
  }
  f.fill(0xaa, 0x800, 0x900);
  return f;
}

const TEXT: Phdr = { type: 1, offset: 0x800, vaddr: 0xffffffff81000000n, paddr: 0x1000000, filesz: 0x100, memsz: 0x2000 };
const PERCPU: Phdr = { type: 1, offset: 0x900, vaddr: 0n, paddr: 0x1002000, filesz: 0, memsz: 0x1000 };
const u32 = (x: number): Uint8Array => new Uint8Array(new Uint32Array([x]).buffer);
const u64 = (x: bigint): Uint8Array => new Uint8Array(new BigUint64Array([x]).buffer);
const notesPhdr = (size: number): Phdr => ({ type: 4, offset: 0x200, vaddr: 0n, paddr: 0, filesz: size, memsz: size });
const PVH_NOTES: Note[] = [
  { name: 'Xen', type: 6, desc: new TextEncoder().encode('linux\0') },
  { name: 'GNU', type: 18, desc: u32(0xdead) }, // right type, wrong owner
  { name: 'Xen', type: 18, desc: u64(0x1000850n) },
];

test('a Linux-style vmlinux: physical e_entry, PVH note (8-byte value), segments loaded with BSS zeroed', () => {
  const img = syntheticElf(0x1000000n, [TEXT, PERCPU, notesPhdr(0x60)], PVH_NOTES);
  const elf = parseElfKernel(img);
  assert.equal(elf.entry, 0x1000000);
  assert.equal(elf.pvhEntry, 0x1000850);
  assert.equal(elf.segments.length, 2);
  const m = GuestMemory.anonymous(32 << 20);
  m.fill(0x1000100, 16, 0x55);
  assert.equal(loadElfKernel(m, img, elf), 0x1003000);
  assert.equal(m.getU8(0x10000ff), 0xaa);
  assert.equal(m.getU8(0x1000100), 0);
});

test('a virtual e_entry is translated through its segment; a 4-byte note is read too; no note means no PVH', () => {
  const img = syntheticElf(0xffffffff81000010n, [TEXT, notesPhdr(20)], [{ name: 'Xen', type: 18, desc: u32(0x1000abc) }]);
  assert.deepEqual([parseElfKernel(img).entry, parseElfKernel(img).pvhEntry], [0x1000010, 0x1000abc]);
  assert.equal(parseElfKernel(syntheticElf(0x1000000n, [TEXT])).pvhEntry, undefined);
  // A PHYS32_ENTRY above 4 GiB is not a 32-bit entry: ignored.
  const high = syntheticElf(0x1000000n, [TEXT, notesPhdr(24)], [{ name: 'Xen', type: 18, desc: u64(0x1_0000_0000n) }]);
  assert.equal(parseElfKernel(high).pvhEntry, undefined);
});

test('a segment that does not fit guest RAM is a clear error', () => {
  const img = syntheticElf(0x1000000n, [TEXT]);
  assert.throws(() => loadElfKernel(GuestMemory.anonymous(16 << 20), img, parseElfKernel(img)), /outside guest RAM — give the VM more memory/);
});

test('corrupt files fail with KERNEL_FORMAT naming the problem', () => {
  const refused = (img: Uint8Array, re: RegExp): void =>
    assert.throws(() => parseElfKernel(img, '/k'), (e) => e instanceof TypevisorError && e.code === 'KERNEL_FORMAT' && re.test(e.message) && e.message.startsWith('/k'));
  refused(new Uint8Array(10), /too short/);
  const ok = (): Uint8Array => syntheticElf(0x1000000n, [TEXT]);
  let img = ok(); img[4] = 1; refused(img, /ELF64/);
  img = ok(); img[18] = 3; refused(img, /not x86-64/);
  img = ok(); img[16] = 3; refused(img, /not an executable/);
  img = ok(); new DataView(img.buffer).setBigUint64(32, 0xfffffffffffffff0n, true); refused(img, /program headers out of range/);
  refused(syntheticElf(0x1000000n, []), /program headers out of range/);
  refused(syntheticElf(0x1000000n, [{ ...TEXT, offset: 0xfff }]), /segment 0 lies outside the file/);
  refused(syntheticElf(0x1000000n, [{ ...TEXT, filesz: 0x3000 }]), /segment 0 lies outside the file|more file bytes/);
  refused(syntheticElf(0x1000000n, [{ ...TEXT, filesz: 0x200, memsz: 0x100 }]), /more file bytes/);
  refused(syntheticElf(0x1000000n, [{ ...TEXT, paddr: 2 ** 53 }]), /beyond any guest address/);
  refused(syntheticElf(0x1000000n, [notesPhdr(0x60)], PVH_NOTES), /no loadable segments/);
  refused(syntheticElf(0x5000000n, [TEXT]), /entry point 0x5000000 is outside/);
  // A note whose sizes run past its segment just ends the walk.
  const bad = syntheticElf(0x1000000n, [TEXT, notesPhdr(0x60)], PVH_NOTES);
  new DataView(bad.buffer).setUint32(0x204, 0xffffffff, true);
  assert.equal(parseElfKernel(bad).pvhEntry, undefined);
});

test('property: random bytes behind an ELF header never crash the parser', () => {
  fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 2048 }), fc.boolean(), (bytes, plausible) => {
    const img = new Uint8Array(bytes);
    if (img.length >= 64) {
      img.set([0x7f, 0x45, 0x4c, 0x46, 2, 1]);
      if (plausible) {
        const v = new DataView(img.buffer);
        v.setUint16(16, 2, true);
        v.setUint16(18, 62, true);
        v.setBigUint64(32, 64n, true);
        v.setUint16(54, 56, true);
        v.setUint16(56, Math.min(4, Math.floor((img.length - 64) / 56)), true);
      }
    }
    assertParsesOrFailsWith('KERNEL_FORMAT', () => parseElfKernel(img));
  }), { numRuns: 3000 });
});

/** vmlinux files on this host: the default guest's and the Debian cloud kernel's in the Typevisor cache. */
function hostVmlinuxes(): string[] {
  const found: string[] = [];
  for (const kind of ['guest', 'debian-cloud']) {
    const dir = join(cacheRoot(), kind);
    if (!existsSync(dir)) continue;
    for (const v of readdirSync(dir)) if (existsSync(join(dir, v, 'vmlinux'))) found.push(join(dir, v, 'vmlinux'));
  }
  return found;
}

for (const path of hostVmlinuxes().slice(0, 2)) {
  test(`a real vmlinux parses and loads: ${path}`, () => {
    const img = new Uint8Array(readFileSync(path));
    const elf = parseElfKernel(img, path);
    assert.equal(elf.entry, 0x1000000);
    assert.ok(elf.pvhEntry !== undefined && elf.segments.some((s) => elf.pvhEntry! >= s.paddr && elf.pvhEntry! < s.paddr + s.memSize));
    const end = Math.max(...elf.segments.map((s) => s.paddr + s.memSize));
    const m = GuestMemory.anonymous(Math.ceil(end / 2 ** 21) * 2 ** 21);
    assert.equal(loadElfKernel(m, img, elf), end);
    const text = elf.segments[0]!;
    assert.deepEqual(m.read(text.paddr, 256), img.subarray(text.fileOffset, text.fileOffset + 256));
  });
}
if (hostVmlinuxes().length === 0) test('a real vmlinux parses and loads', { skip: 'no vmlinux in the Typevisor cache' }, () => {});
