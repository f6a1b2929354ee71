// Unit tests of the boot structures: GDT entries, segments, page tables, zero page, PVH start_info, initrd placement.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import { GDT_ENTRY, flatSegment, gdtEntry, longModeBootState } from '../../../src/arch/x86_64/gdt.js';
import { writeIdentityPageTables } from '../../../src/arch/x86_64/page-tables.js';
import { BOOT_PARAMS, buildZeroPage } from '../../../src/arch/x86_64/zero-page.js';
import { buildPvhStartInfo, HVM_START_MAGIC } from '../../../src/arch/x86_64/pvh.js';
import { placeInitrd } from '../../../src/arch/x86_64/initrd.js';
import { LAYOUT, e820Map } from '../../../src/arch/x86_64/layout.js';

test('GDT entries have the architectural encodings', () => {
  assert.equal(GDT_ENTRY.CODE64, 0x00af9b000000ffffn);
  assert.equal(GDT_ENTRY.CODE32, 0x00cf9b000000ffffn);
  assert.equal(GDT_ENTRY.DATA, 0x00cf93000000ffffn);
  assert.equal(GDT_ENTRY.TSS, 0x00008b0000000067n);
  assert.equal(gdtEntry(0xc093, 0x12345678, 0xabcde), 0x12ca93345678bcden);
});

test('segments decoded from descriptors carry the hidden-part fields KVM wants', () => {
  const cs = flatSegment(GDT_ENTRY.CODE64, 0x10);
  assert.deepEqual(cs, { base: 0n, limit: 0xffffffff, selector: 0x10, type: 0xb, s: 1, dpl: 0, present: 1, avl: 0, l: 1, db: 0, g: 1, unusable: 0 });
  const st = longModeBootState(0x1000200);
  assert.equal(st.sregs.efer, 0x500n);
  assert.equal(st.sregs.cr3, BigInt(LAYOUT.PML4));
  assert.equal(st.regs.rsi, BigInt(LAYOUT.ZERO_PAGE));
  assert.equal(st.sregs.ds.selector, 0x18);
});

test('identity page tables map the first 4 GiB with 2 MiB pages', () => {
  const m = GuestMemory.anonymous(1 << 20);
  writeIdentityPageTables(m);
  assert.equal(m.getU64(LAYOUT.PML4), BigInt(LAYOUT.PDPT) | 3n);
  assert.equal(m.getU64(LAYOUT.PDPT + 3 * 8), BigInt(LAYOUT.PD + 3 * 4096) | 3n);
  assert.equal(m.getU64(LAYOUT.PD + 8), 0x200000n | 0x83n);
  assert.equal(m.getU64(LAYOUT.PD + 3 * 4096 + 511 * 8), 0xffe00000n | 0x83n);
});

test('zero page: loader type, command line, initrd, e820 at the uapi offsets', () => {
  const bp = buildZeroPage({ cmdlineGpa: 0x20000, cmdlineSize: 12, e820: e820Map(256 << 20), initrd: { gpa: 0xf000000, size: 0x1234 } });
  const v = new DataView(bp.buffer);
  assert.equal(bp[0x210], 0xff);
  assert.equal(v.getUint32(0x228, true), 0x20000);
  assert.equal(v.getUint32(0x218, true), 0xf000000);
  assert.equal(v.getUint32(0x21c, true), 0x1234);
  assert.equal(v.getUint32(0x202, true), 0x53726448);
  assert.equal(bp[BOOT_PARAMS.E820_ENTRIES], 3);
  const second = BOOT_PARAMS.E820_TABLE + 20;
  assert.equal(v.getBigUint64(second, true), 0x9fc00n);
  assert.equal(v.getUint32(second + 16, true), 2);
});

test('PVH start_info: magic, version 1, memory map and the initrd module', () => {
  const blob = buildPvhStartInfo({ cmdlineGpa: 0x20000, e820: e820Map(64 << 20), initrd: { gpa: 0x3000000, size: 99 } });
  const v = new DataView(blob.buffer);
  assert.equal(v.getUint32(0, true), HVM_START_MAGIC);
  assert.equal(v.getUint32(4, true), 1);
  assert.equal(v.getUint32(12, true), 1);
  assert.equal(v.getBigUint64(16, true), BigInt(LAYOUT.PVH_MODLIST));
  assert.equal(v.getBigUint64(40, true), BigInt(LAYOUT.PVH_MEMMAP));
  assert.equal(v.getUint32(48, true), 3);
  const mod = LAYOUT.PVH_MODLIST - LAYOUT.PVH_START_INFO;
  assert.equal(v.getBigUint64(mod, true), 0x3000000n);
  assert.equal(v.getBigUint64(mod + 8, true), 99n);
});

test('initrd goes high and page-aligned; one that does not fit is a clear error', () => {
  const m = GuestMemory.anonymous(32 << 20);
  const r = placeInitrd(m, new Uint8Array(5000).fill(7), { kernelEnd: 4 << 20, maxAddr: 0x7fffffff });
  assert.equal(r.gpa % 4096, 0);
  assert.ok(r.gpa + 5000 <= 32 << 20 && r.gpa >= (32 << 20) - 8192);
  assert.equal(m.getU8(r.gpa + 4999), 7);
  assert.throws(() => placeInitrd(m, new Uint8Array(30 << 20), { kernelEnd: 4 << 20, maxAddr: 0x7fffffff }), /does not fit/);
});
