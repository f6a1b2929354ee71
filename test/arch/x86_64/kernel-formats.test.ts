// Unit tests of the kernel parsers on synthetic images: ELF with a PVH note, bzImage headers, corrupt files.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import { loadElfKernel, parseElfKernel } from '../../../src/arch/x86_64/elf.js';
import { parseBzImage } from '../../../src/arch/x86_64/bzimage.js';
import { TypevisorError } from '../../../src/base/errors.js';

/** A minimal ELF64 x86-64 file: one PT_LOAD at paddr 0x100000 and one PT_NOTE with Xen's PHYS32_ENTRY. */
function syntheticElf(withPvh: boolean): Uint8Array {
  const f = new Uint8Array(0x1000);
  const v = new DataView(f.buffer);
  f.set([0x7f, 0x45, 0x4c, 0x46, 2, 1, 1]);
  v.setUint16(16, 2, true);
  v.setUint16(18, 62, true);
  v.setBigUint64(24, 0xffffffff81000010n, true); // e_entry (virtual)
  v.setBigUint64(32, 64n, true); // phoff
  v.setUint16(54, 56, true);
  v.setUint16(56, 2, true);
  const ph = (i: number, type: number, off: number, vaddr: bigint, paddr: number, filesz: number, memsz: number): void => {
    const o = 64 + i * 56;
    v.setUint32(o, type, true);
    v.setBigUint64(o + 8, BigInt(off), true);
    v.setBigUint64(o + 16, vaddr, true);
    v.setBigUint64(o + 24, BigInt(paddr), true);
    v.setBigUint64(o + 32, BigInt(filesz), true);
    v.setBigUint64(o + 40, BigInt(memsz), true);
  };
  ph(0, 1, 0x800, 0xffffffff81000000n, 0x100000, 0x100, 0x2000);
  f.fill(0xaa, 0x800, 0x900);
  // Note: namesz 4 "Xen\0", descsz 4, type 18.
  const n = 0x200;
  v.setUint32(n, 4, true);
  v.setUint32(n + 4, 4, true);
  v.setUint32(n + 8, withPvh ? 18 : 5, true);
  f.set([0x58, 0x65, 0x6e, 0], n + 12);
  v.setUint32(n + 16, 0x1000abc, true);
  ph(1, 4, n, 0n, 0, 20, 20);
  return f;
}

test('ELF: entry translated to physical, PVH note found, segments loaded with their BSS zeroed', () => {
  const elf = parseElfKernel(syntheticElf(true));
  assert.equal(elf.entry, 0x100010);
  assert.equal(elf.pvhEntry, 0x1000abc);
  const m = GuestMemory.anonymous(4 << 20);
  m.fill(0x100100, 16, 0x55);
  assert.equal(loadElfKernel(m, syntheticElf(true), elf), 0x102000);
  assert.equal(m.getU8(0x1000ff), 0xaa);
  assert.equal(m.getU8(0x100100), 0);
  assert.equal(parseElfKernel(syntheticElf(false)).pvhEntry, undefined);
});

test('ELF: a segment that does not fit guest RAM is a clear error', () => {
  const m = GuestMemory.anonymous(1 << 20);
  const img = syntheticElf(true);
  assert.throws(() => loadElfKernel(m, img, parseElfKernel(img)), /more memory/);
});

test('bzImage: header fields and the 64-bit entry; old or foreign files refused', () => {
  const f = new Uint8Array(0x2000);
  const v = new DataView(f.buffer);
  f[0x1f1] = 3;
  v.setUint32(0x202, 0x53726448, true);
  v.setUint16(0x206, 0x020f, true);
  v.setUint32(0x22c, 0x7fffffff, true);
  v.setUint16(0x236, 1, true);
  v.setUint32(0x260, 0x1000000, true);
  const bz = parseBzImage(f);
  assert.equal(bz.kernelOffset, 0x800);
  assert.equal(bz.has64BitEntry, true);
  assert.equal(bz.entry64, 0x100200);
  assert.equal(bz.initSize, 0x1000000);
  v.setUint16(0x206, 0x0204, true);
  assert.throws(() => parseBzImage(f), /2\.06 or later/);
  assert.throws(() => parseBzImage(new Uint8Array(0x1000)), /HdrS/);
});

test('property: random bytes never crash the kernel parsers, they fail with KERNEL_FORMAT', () => {
  fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 2048 }), fc.boolean(), (bytes, elfMagic) => {
    const img = new Uint8Array(bytes);
    if (elfMagic && img.length >= 6) img.set([0x7f, 0x45, 0x4c, 0x46, 2, 1]);
    for (const parse of [parseElfKernel, parseBzImage]) {
      try {
        parse(img);
      } catch (e) {
        assert.ok(e instanceof TypevisorError && e.code === 'KERNEL_FORMAT', String(e));
      }
    }
  }), { numRuns: 2000 });
});
