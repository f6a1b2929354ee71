// Unit tests of the identity page tables: golden entries of PML4, PDPT and the 2 MiB page directories.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import { writeIdentityPageTables } from '../../../src/arch/x86_64/page-tables.js';
import { LAYOUT } from '../../../src/arch/x86_64/layout.js';

test('identity page tables map the first 4 GiB with 2 MiB pages', () => {
  const m = GuestMemory.anonymous(1 << 20);
  m.fill(LAYOUT.PML4, 6 * 4096, 0xee);
  assert.equal(writeIdentityPageTables(m), 0x9000);
  assert.equal(m.getU64(0x9000), 0xa003n);
  assert.equal(m.getU64(0x9008), 0n);
  assert.deepEqual([0, 1, 2, 3, 4].map((i) => m.getU64(0xa000 + i * 8)), [0xb003n, 0xc003n, 0xd003n, 0xe003n, 0n]);
  assert.equal(m.getU64(0xb000), 0x83n);
  assert.equal(m.getU64(0xb008), 0x200083n);
  assert.equal(m.getU64(0xc000), 0x40000083n);
  assert.equal(m.getU64(0xe000 + 511 * 8), 0xffe00083n);
});

test('a 1 GiB map writes one page directory; other sizes are refused', () => {
  const m = GuestMemory.anonymous(1 << 20);
  m.fill(0xc000, 8, 0xee);
  writeIdentityPageTables(m, 1);
  assert.equal(m.getU64(0xa008), 0n);
  assert.equal(m.getU64(0xb000 + 511 * 8), 0x3fe00083n);
  assert.equal(m.getU64(0xc000), 0xeeeeeeeeeeeeeeeen); // untouched
  assert.throws(() => writeIdentityPageTables(m, 5), /1 to 4 GiB/);
});
