// Identity-mapping 4-level page tables (Intel SDM vol. 3 §4.5) for the 64-bit boot: the first GiBs in 2 MiB pages.
import { TypevisorError } from '../../base/errors.js';
import type { GuestMemory } from '../../memory/guest-memory.js';
import { LAYOUT } from './layout.js';

const PRESENT = 0x1n;
const WRITABLE = 0x2n;
/** PS in a page-directory entry: it maps a 2 MiB page instead of pointing at a page table. */
const PAGE_SIZE_2M = 0x80n;
/** Page directories fit at LAYOUT.PD up to 0xefff: four of them. */
const MAX_GIB = 4;

/**
 * Writes PML4 → PDPT → `gib` page directories, mapping [0, gib GiB) onto itself; returns CR3.
 * 4 GiB (the default) covers the kernel, its initrd and the MMIO hole, so the kernel can touch
 * any of them before it builds its own tables.
 */
export function writeIdentityPageTables(memory: GuestMemory, gib = MAX_GIB): number {
  if (!Number.isInteger(gib) || gib < 1 || gib > MAX_GIB) {
    throw new TypevisorError('INVALID_ARGUMENT', `identity page tables map 1 to ${MAX_GIB} GiB, not ${gib}`);
  }
  memory.fill(LAYOUT.PML4, LAYOUT.PD + 4096 * gib - LAYOUT.PML4, 0);
  memory.setU64(LAYOUT.PML4, BigInt(LAYOUT.PDPT) | PRESENT | WRITABLE);
  for (let g = 0; g < gib; g++) {
    const pd = LAYOUT.PD + g * 4096;
    memory.setU64(LAYOUT.PDPT + g * 8, BigInt(pd) | PRESENT | WRITABLE);
    for (let i = 0; i < 512; i++) {
      const addr = BigInt(g) * 2n ** 30n + BigInt(i) * 2n ** 21n;
      memory.setU64(pd + i * 8, addr | PRESENT | WRITABLE | PAGE_SIZE_2M);
    }
  }
  return LAYOUT.PML4;
}
