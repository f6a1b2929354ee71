// Unit tests of guest page-table walks: 4 KiB, 2 MiB and 1 GiB pages, faults, hostile table pointers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GuestMemory } from '../../../../src/memory/guest-memory.js';
import { readLinear, translate } from '../../../../src/arch/x86_64/assist/page-walk.js';

const LONG = { cr0: 0x80000011n, cr3: 0x1000n, cr4: 0x20n, efer: 0x500n };

/** PML4 0x1000 → PDPT 0x2000 → PD 0x3000 → PT 0x4000; a 2 MiB page and a 1 GiB page too. */
function tables(): GuestMemory {
  const m = GuestMemory.anonymous(8 << 20);
  const va = 0xffffffff81000000n; // PML4 511, PDPT 510, PD 8
  m.setU64(0x1000 + 511 * 8, 0x2000n | 3n);
  m.setU64(0x2000 + 510 * 8, 0x3000n | 3n);
  m.setU64(0x3000 + 8 * 8, 0x4000n | 3n); // → 4 KiB pages
  m.setU64(0x4000 + 1 * 8, 0x5000n | 3n); // va + 0x1000 → 0x5000
  m.setU64(0x3000 + 9 * 8, 0x200000n | 0x83n); // 2 MiB page at va + 2 MiB → 0x200000
  m.setU64(0x1000 + 0, 0x6000n | 3n);
  m.setU64(0x6000 + 1 * 8, 0x40000000n | 0x83n); // 1 GiB page: va 1 GiB → 1 GiB (outside RAM, still translated)
  m.setU64(0x6000 + 2 * 8, 0x7fff_ffff_f000n | 3n); // table pointer outside RAM
  void va;
  return m;
}

test('4-level walk through 4 KiB, 2 MiB and 1 GiB pages', () => {
  const m = tables();
  assert.deepEqual(translate(m, 0xffffffff81001234n, LONG), { gpa: 0x5234 });
  assert.deepEqual(translate(m, 0xffffffff81212345n, LONG), { gpa: 0x212345 });
  assert.deepEqual(translate(m, 0x40001234n, LONG), { gpa: 0x40001234 });
});

test('not-present entries and table pointers outside RAM are faults', () => {
  const m = tables();
  assert.match((translate(m, 0xffffffff81002000n, LONG) as { fault: string }).fault, /not present/);
  assert.match((translate(m, 0x80000000n, LONG) as { fault: string }).fault, /outside guest RAM/);
  assert.deepEqual(translate(m, 0x1234n, { ...LONG, cr0: 0x11n }), { gpa: 0x1234 });
});

test('readLinear crosses pages through separate translations and refuses unmapped bytes', () => {
  const m = tables();
  m.fill(0x5000, 4, 0xab);
  m.fill(0x4ffc, 4, 0xcd); // physically before 0x5000, but virtually unrelated
  const bytes = readLinear(m, 0xffffffff81001000n, 4, LONG);
  assert.deepEqual([...bytes!], [0xab, 0xab, 0xab, 0xab]);
  assert.equal(readLinear(m, 0xffffffff81001ffen, 4, LONG), undefined);
});

test('property: random page tables and addresses never throw', () => {
  fc.assert(fc.property(fc.array(fc.tuple(fc.nat(511), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })), { maxLength: 64 }),
    fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.boolean(), (entries, va, la57) => {
      const m = GuestMemory.anonymous(1 << 16);
      for (const [i, e] of entries) m.setU64(0x1000 + i * 8, e);
      const r = translate(m, va, { ...LONG, cr4: la57 ? 0x1020n : 0x20n });
      assert.ok('gpa' in r || 'fault' in r);
    }), { numRuns: 5000 });
});
