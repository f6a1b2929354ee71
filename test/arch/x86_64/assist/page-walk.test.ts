// Unit tests of guest page-table walks: every paging mode, faults, permissions, hostile table pointers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GuestMemory } from '../../../../src/memory/guest-memory.js';
import {
  readLinear, readLinearChecked, translate, writeLinear, type Translation,
} from '../../../../src/arch/x86_64/assist/page-walk.js';

const LONG = { cr0: 0x80010011n, cr3: 0x1000n, cr4: 0x20n, efer: 0x500n };
const PAE = { cr0: 0x80010011n, cr3: 0x1000n, cr4: 0x20n, efer: 0n };
const PG32 = { cr0: 0x80010011n, cr3: 0x1000n, cr4: 0x10n, efer: 0n };

const faultOf = (t: Translation): string => {
  assert.ok('fault' in t, `expected a fault, got ${JSON.stringify(t)}`);
  return t.reason;
};

/** PML4 0x1000 → PDPT 0x2000 → PD 0x3000 → PT 0x4000; a 2 MiB page and a 1 GiB page too. */
function tables(): GuestMemory {
  const m = GuestMemory.anonymous(8 << 20);
  // va 0xffffffff81000000: PML4 511, PDPT 510, PD 8.
  m.setU64(0x1000 + 511 * 8, 0x2000n | 3n);
  m.setU64(0x2000 + 510 * 8, 0x3000n | 3n);
  m.setU64(0x3000 + 8 * 8, 0x4000n | 3n); // → 4 KiB pages
  m.setU64(0x4000 + 1 * 8, 0x5000n | 3n); // va + 0x1000 → 0x5000
  m.setU64(0x4000 + 3 * 8, 0x6000n | 1n); // va + 0x3000 → 0x6000, read-only
  m.setU64(0x3000 + 9 * 8, 0x200000n | 0x83n); // 2 MiB page at va + 2 MiB → 0x200000
  m.setU64(0x1000 + 0, 0x7000n | 3n);
  m.setU64(0x7000 + 1 * 8, 0x40000000n | 0x83n); // 1 GiB page: va 1 GiB → 1 GiB (outside RAM, still translated)
  m.setU64(0x7000 + 2 * 8, 0x7fff_ffff_f000n | 3n); // table pointer outside RAM
  m.setU64(0x1000 + 1 * 8, 0x8000n | 0x83n); // PS in a PML4E: reserved
  return m;
}

test('4-level walk through 4 KiB, 2 MiB and 1 GiB pages', () => {
  const m = tables();
  assert.deepEqual(translate(m, 0xffffffff81001234n, LONG), { gpa: 0x5234 });
  assert.deepEqual(translate(m, 0xffffffff81212345n, LONG), { gpa: 0x212345 });
  assert.deepEqual(translate(m, 0x40001234n, LONG), { gpa: 0x40001234 });
});

test('not-present entries, table pointers outside RAM, reserved PS and non-canonical addresses are faults', () => {
  const m = tables();
  const np = translate(m, 0xffffffff81002000n, LONG);
  assert.equal(faultOf(np), 'not-present');
  assert.ok('fault' in np && np.level === 1 && /not present/.test(np.fault));
  const out = translate(m, 0x80000000n, LONG);
  assert.equal(faultOf(out), 'outside-ram');
  assert.ok('fault' in out && /outside guest RAM/.test(out.fault));
  assert.equal(faultOf(translate(m, 0x8000000000n, LONG)), 'reserved');
  assert.equal(faultOf(translate(m, 0x0000800000000000n, LONG)), 'non-canonical');
  assert.equal(faultOf(translate(m, 0x1000n, { ...LONG, cr3: 0x10000000n })), 'outside-ram');
});

test('without paging the linear address is the physical one (real and protected mode)', () => {
  const m = tables();
  assert.deepEqual(translate(m, 0x1234n, { ...LONG, cr0: 0x11n, efer: 0n }), { gpa: 0x1234 });
  assert.deepEqual(translate(m, 0xffff0n, { ...LONG, cr0: 0x10n, efer: 0n }), { gpa: 0xffff0 });
});

test('write permission: a read-only page faults on supervisor writes only with CR0.WP', () => {
  const m = tables();
  const va = 0xffffffff81003010n;
  assert.deepEqual(translate(m, va, LONG), { gpa: 0x6010 });
  assert.equal(faultOf(translate(m, va, LONG, { write: true })), 'protection');
  assert.deepEqual(translate(m, va, { ...LONG, cr0: 0x80000011n }, { write: true }), { gpa: 0x6010 });
  // U/S clear in every entry built here: a user-mode access faults.
  assert.equal(faultOf(translate(m, 0xffffffff81001000n, LONG, { user: true })), 'protection');
});

test('5-level (LA57) walk', () => {
  const m = GuestMemory.anonymous(1 << 20);
  const va = 0x00ff_8000_4020_3456n; // PML5 1, PML4 0x100 … canonical with 57 bits
  const idx = (shift: bigint): number => Number((va >> shift) & 0x1ffn);
  m.setU64(0x1000 + idx(48n) * 8, 0x2000n | 7n);
  m.setU64(0x2000 + idx(39n) * 8, 0x3000n | 7n);
  m.setU64(0x3000 + idx(30n) * 8, 0x4000n | 7n);
  m.setU64(0x4000 + idx(21n) * 8, 0x5000n | 7n);
  m.setU64(0x5000 + idx(12n) * 8, 0x9000n | 7n);
  assert.deepEqual(translate(m, va, { ...LONG, cr4: 0x1020n }), { gpa: 0x9456 });
  // The same address is non-canonical with 4-level paging.
  assert.equal(faultOf(translate(m, va, LONG)), 'non-canonical');
});

test('PAE walk: 4 KiB and 2 MiB pages', () => {
  const m = GuestMemory.anonymous(8 << 20);
  const va = 0xc0403123n; // PDPTE 3, PDE 2, PTE 3
  m.setU64(0x1000 + 3 * 8, 0x2000n | 1n);
  m.setU64(0x2000 + 2 * 8, 0x3000n | 3n);
  m.setU64(0x3000 + 3 * 8, 0x7000n | 3n);
  m.setU64(0x2000 + 5 * 8, 0x400000n | 0x83n); // 2 MiB page for 0xc0a00000
  assert.deepEqual(translate(m, va, PAE), { gpa: 0x7123 });
  assert.deepEqual(translate(m, 0xc0a12345n, PAE), { gpa: 0x412345 });
  assert.equal(faultOf(translate(m, 0x00001000n, PAE)), 'not-present');
});

test('32-bit walk: 4 KiB pages, 4 MiB PSE pages with PSE-36 high bits', () => {
  const m = GuestMemory.anonymous(8 << 20);
  m.setU32(0x1000 + 0x300 * 4, 0x2000 | 3); // va 0xc0000000 → PT 0x2000
  m.setU32(0x2000 + 5 * 4, 0x9000 | 3);
  m.setU32(0x1000 + 0x301 * 4, 0x400000 | 0x83); // 4 MiB page
  m.setU32(0x1000 + 0x302 * 4, 0x400000 | 0x83 | (1 << 13)); // PSE-36: bit 32 of the address
  assert.deepEqual(translate(m, 0xc0005abcn, PG32), { gpa: 0x9abc });
  assert.deepEqual(translate(m, 0xc0412345n, PG32), { gpa: 0x412345 });
  assert.deepEqual(translate(m, 0xc0812345n, PG32), { gpa: 0x100412345 });
  // Without CR4.PSE the PS bit is ignored: the entry points at a page table.
  assert.equal(faultOf(translate(m, 0xc0412345n, { ...PG32, cr4: 0n })), 'not-present');
});

test('readLinear crosses pages through separate translations and refuses unmapped bytes', () => {
  const m = tables();
  m.fill(0x5000, 4, 0xab);
  m.fill(0x4ffc, 4, 0xcd); // physically before 0x5000, but virtually unrelated
  const bytes = readLinear(m, 0xffffffff81001000n, 4, LONG);
  assert.deepEqual([...bytes!], [0xab, 0xab, 0xab, 0xab]);
  assert.equal(readLinear(m, 0xffffffff81001ffen, 4, LONG), undefined);
  const f = readLinearChecked(m, 0xffffffff81001ffen, 4, LONG);
  assert.ok(!(f instanceof Uint8Array) && f.reason === 'not-present');
  // A page mapped outside RAM is a fault for the data access too.
  const o = readLinearChecked(m, 0x40000000n, 4, LONG);
  assert.ok(!(o instanceof Uint8Array) && o.reason === 'outside-ram');
});

test('writeLinear writes across pages, and writes nothing when a later page faults', () => {
  const m = tables();
  m.setU64(0x3000 + 10 * 8, 0x400000n | 0x83n); // va + 4 MiB → 0x400000 (2 MiB)
  assert.equal(writeLinear(m, 0xffffffff813ffffen, Uint8Array.of(1, 2, 3, 4), LONG), true);
  assert.deepEqual([...m.read(0x3ffffe, 2)], [1, 2]);
  assert.deepEqual([...m.read(0x400000, 2)], [3, 4]);
  m.fill(0x5ffe, 2, 0);
  const r = writeLinear(m, 0xffffffff81001ffen, Uint8Array.of(9, 9, 9, 9), LONG);
  assert.ok(r !== true && r.reason === 'not-present');
  assert.deepEqual([...m.read(0x5ffe, 2)], [0, 0]);
  const ro = writeLinear(m, 0xffffffff81003000n, Uint8Array.of(1), LONG);
  assert.ok(ro !== true && ro.reason === 'protection');
});

test('property: random page tables and addresses never throw', () => {
  const modes = [LONG, PAE, PG32, { ...LONG, cr4: 0x1020n }, { ...PG32, cr4: 0n }];
  fc.assert(fc.property(fc.array(fc.tuple(fc.nat(1023), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })), { maxLength: 64 }),
    fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.nat(modes.length - 1), fc.boolean(), (entries, va, mode, w) => {
      const m = GuestMemory.anonymous(1 << 16);
      // Entries land in the first tables and, often pointing back into this small RAM, are walked.
      for (const [i, e] of entries) m.setU64(0x1000 + i * 8, e);
      const s = modes[mode]!;
      const r = translate(m, va, s, { write: w });
      assert.ok('gpa' in r || 'fault' in r);
      if ('gpa' in r) assert.ok(Number.isSafeInteger(r.gpa) && r.gpa >= 0);
      readLinear(m, va, 15, s);
    }), { numRuns: 5000 });
});
