// Unit tests of the GDT encoders and the long-mode and real-mode boot register states.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import { GDT_ENTRY, flatSegment, gdtEntry, gdtEntryFromSegment, longModeBootState, realModeBootState, writeGdt } from '../../../src/arch/x86_64/gdt.js';
import { LAYOUT } from '../../../src/arch/x86_64/layout.js';

test('GDT entries have the architectural encodings', () => {
  assert.equal(GDT_ENTRY.CODE64, 0x00af9b000000ffffn);
  assert.equal(GDT_ENTRY.CODE32, 0x00cf9b000000ffffn);
  assert.equal(GDT_ENTRY.DATA, 0x00cf93000000ffffn);
  assert.equal(GDT_ENTRY.TSS, 0x00008b0000000067n);
  assert.equal(gdtEntry(0xc093, 0x12345678, 0xabcde), 0x12ca93345678bcden);
  assert.equal(gdtEntry(0x8093, 0xfedcba98, 0xffff), 0xfe8093dcba98ffffn); // base ≥ 2 GiB stays unsigned
});

test('segments decoded from descriptors carry the hidden-part fields KVM wants', () => {
  assert.deepEqual(flatSegment(GDT_ENTRY.CODE64, 0x10),
    { base: 0n, limit: 0xffffffff, selector: 0x10, type: 0xb, s: 1, dpl: 0, present: 1, avl: 0, l: 1, db: 0, g: 1, unusable: 0 });
  assert.deepEqual(flatSegment(GDT_ENTRY.TSS, 0x20),
    { base: 0n, limit: 0x67, selector: 0x20, type: 0xb, s: 0, dpl: 0, present: 1, avl: 0, l: 0, db: 0, g: 0, unusable: 0 });
  assert.equal(flatSegment(0n, 0).unusable, 1);
});

test('property: encoding a decoded descriptor gives it back', () => {
  fc.assert(fc.property(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), (raw) => {
    assert.equal(gdtEntryFromSegment(flatSegment(raw, 0)), raw);
  }), { numRuns: 2000 });
});

test('long-mode state: boot.rst selectors 0x10/0x18, PAE paging on the identity tables, RSI = zero page', () => {
  const st = longModeBootState(0x100200);
  assert.deepEqual(st.regs, { rip: 0x100200n, rsi: 0x7000n, rsp: 0x8ff0n, rbp: 0x8ff0n, rflags: 2n });
  assert.equal(st.sregs.cs.selector, 0x10);
  assert.equal(st.sregs.cs.l, 1);
  assert.equal(st.sregs.ds.selector, 0x18);
  assert.equal(st.sregs.ss.selector, 0x18);
  assert.equal(st.sregs.tr.selector, 0x20);
  assert.equal(st.sregs.cr0, 0x80000011n);
  assert.equal(st.sregs.cr4, 0x20n);
  assert.equal(st.sregs.efer, 0x500n);
  assert.equal(st.sregs.cr3, BigInt(LAYOUT.PML4));
  assert.deepEqual(st.sregs.gdt, { base: 0x500n, limit: 39 });
  const m = GuestMemory.anonymous(1 << 20);
  writeGdt(m);
  assert.deepEqual([0, 1, 2, 3, 4].map((i) => m.getU64(LAYOUT.GDT + i * 8)), [0n, 0n, GDT_ENTRY.CODE64, GDT_ENTRY.DATA, GDT_ENTRY.TSS]);
});

test('real-mode state: CS = setup segment + 0x20 at IP 0, data segments = setup segment', () => {
  const st = realModeBootState(0x1000, 0xe000);
  assert.equal(st.sregs.cs.selector, 0x1020);
  assert.equal(st.sregs.cs.base, 0x10200n);
  assert.equal(st.sregs.ds.base, 0x10000n);
  assert.equal(st.regs.rsp, 0xe000n);
  assert.equal(st.sregs.cr0 & 1n, 0n);
});
