// Identity-mapping 4-level page tables (Intel SDM vol. 3 §4.5) for the 64-bit boot: the first 4 GiB in 2 MiB pages.
import type { GuestMemory } from '../../memory/guest-memory.js';
import { LAYOUT } from './layout.js';

const PRESENT = 0x1n;
const WRITABLE = 0x2n;
const PAGE_SIZE_2M = 0x80n;
const GIB_COUNT = 4;

/** Writes PML4 → PDPT → four page directories; returns CR3. */
export function writeIdentityPageTables(memory: GuestMemory): number {
  memory.fill(LAYOUT.PML4, 4096 * (2 + GIB_COUNT), 0);
  memory.setU64(LAYOUT.PML4, BigInt(LAYOUT.PDPT) | PRESENT | WRITABLE);
  for (let g = 0; g < GIB_COUNT; g++) {
    const pd = LAYOUT.PD + g * 4096;
    memory.setU64(LAYOUT.PDPT + g * 8, BigInt(pd) | PRESENT | WRITABLE);
    for (let i = 0; i < 512; i++) {
      const addr = BigInt(g) * 2n ** 30n + BigInt(i) * 2n ** 21n;
      memory.setU64(pd + i * 8, addr | PRESENT | WRITABLE | PAGE_SIZE_2M);
    }
  }
  return LAYOUT.PML4;
}
