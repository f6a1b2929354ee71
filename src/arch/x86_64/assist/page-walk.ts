// Guest virtual → physical translation through the guest's own page tables (Intel SDM vol. 3 ch. 4).
import type { GuestMemory } from '../../../memory/guest-memory.js';

export interface PagingState {
  cr0: bigint;
  cr3: bigint;
  cr4: bigint;
  efer: bigint;
}

export type Translation = { gpa: number } | { fault: string };

const CR0_PG = 1n << 31n;
const CR4_PSE = 1n << 4n;
const CR4_PAE = 1n << 5n;
const CR4_LA57 = 1n << 12n;
const EFER_LMA = 1n << 10n;
const P = 1n;
const PS = 1n << 7n;
const ADDR_MASK = 0x000ffffffffff000n;

/**
 * Translates a linear address. Every table read is bounds-checked against guest RAM: a table
 * pointer outside RAM, or a not-present entry, is a fault — never an exception.
 */
export function translate(memory: GuestMemory, linear: bigint, s: PagingState): Translation {
  if ((s.cr0 & CR0_PG) === 0n) return { gpa: Number(BigInt.asUintN(52, linear)) };
  if (s.efer & EFER_LMA) return walkLong(memory, BigInt.asUintN(64, linear), s);
  if (s.cr4 & CR4_PAE) return walkPae(memory, BigInt.asUintN(32, linear), s.cr3);
  return walk32(memory, BigInt.asUintN(32, linear), s);
}

function readEntry(memory: GuestMemory, gpa: bigint, size: 4 | 8): bigint | undefined {
  const a = Number(gpa);
  if (!memory.contains(a, size)) return undefined;
  return size === 8 ? memory.getU64(a) : BigInt(memory.getU32(a));
}

function walkLong(memory: GuestMemory, va: bigint, s: PagingState): Translation {
  const levels = s.cr4 & CR4_LA57 ? 5 : 4;
  let table = s.cr3 & ADDR_MASK;
  for (let level = levels; level >= 1; level--) {
    const shift = 12n + 9n * BigInt(level - 1);
    const index = (va >> shift) & 0x1ffn;
    const entry = readEntry(memory, table + index * 8n, 8);
    if (entry === undefined) return { fault: `level-${level} table at 0x${table.toString(16)} is outside guest RAM` };
    if ((entry & P) === 0n) return { fault: `not present at level ${level} (0x${va.toString(16)})` };
    if (level <= 3 && level >= 2 && entry & PS) {
      const pageMask = (1n << shift) - 1n;
      return { gpa: Number((entry & ADDR_MASK & ~pageMask) | (va & pageMask)) };
    }
    table = entry & ADDR_MASK;
  }
  return { gpa: Number(table | (va & 0xfffn)) };
}

function walkPae(memory: GuestMemory, va: bigint, cr3: bigint): Translation {
  const pdpte = readEntry(memory, (cr3 & 0xffffffe0n) + ((va >> 30n) & 3n) * 8n, 8);
  if (pdpte === undefined || (pdpte & P) === 0n) return { fault: `PDPTE not present (0x${va.toString(16)})` };
  const pde = readEntry(memory, (pdpte & ADDR_MASK) + ((va >> 21n) & 0x1ffn) * 8n, 8);
  if (pde === undefined || (pde & P) === 0n) return { fault: `PDE not present (0x${va.toString(16)})` };
  if (pde & PS) return { gpa: Number((pde & ADDR_MASK & ~0x1fffffn) | (va & 0x1fffffn)) };
  const pte = readEntry(memory, (pde & ADDR_MASK) + ((va >> 12n) & 0x1ffn) * 8n, 8);
  if (pte === undefined || (pte & P) === 0n) return { fault: `PTE not present (0x${va.toString(16)})` };
  return { gpa: Number((pte & ADDR_MASK) | (va & 0xfffn)) };
}

function walk32(memory: GuestMemory, va: bigint, s: PagingState): Translation {
  const pde = readEntry(memory, (s.cr3 & 0xfffff000n) + (va >> 22n) * 4n, 4);
  if (pde === undefined || (pde & P) === 0n) return { fault: `PDE not present (0x${va.toString(16)})` };
  if (pde & PS && s.cr4 & CR4_PSE) return { gpa: Number((pde & 0xffc00000n) | (va & 0x3fffffn)) };
  const pte = readEntry(memory, (pde & 0xfffff000n) + ((va >> 12n) & 0x3ffn) * 4n, 4);
  if (pte === undefined || (pte & P) === 0n) return { fault: `PTE not present (0x${va.toString(16)})` };
  return { gpa: Number((pte & 0xfffff000n) | (va & 0xfffn)) };
}

/** Reads `length` bytes at a linear address, page by page; undefined if any byte is unmapped. */
export function readLinear(memory: GuestMemory, linear: bigint, length: number, s: PagingState): Uint8Array | undefined {
  const out = new Uint8Array(length);
  let done = 0;
  while (done < length) {
    const va = linear + BigInt(done);
    const t = translate(memory, va, s);
    if (!('gpa' in t)) return undefined;
    const n = Math.min(length - done, 4096 - (t.gpa % 4096));
    if (!memory.contains(t.gpa, n)) return undefined;
    out.set(memory.slice(t.gpa, n), done);
    done += n;
  }
  return out;
}

/** Writes bytes at a linear address, page by page; false (nothing written) if any byte is unmapped. */
export function writeLinear(memory: GuestMemory, linear: bigint, data: Uint8Array, s: PagingState): boolean {
  const pieces: { gpa: number; from: number; n: number }[] = [];
  let done = 0;
  while (done < data.length) {
    const t = translate(memory, linear + BigInt(done), s);
    if (!('gpa' in t)) return false;
    const n = Math.min(data.length - done, 4096 - (t.gpa % 4096));
    if (!memory.contains(t.gpa, n)) return false;
    pieces.push({ gpa: t.gpa, from: done, n });
    done += n;
  }
  for (const p of pieces) memory.write(p.gpa, data.subarray(p.from, p.from + p.n));
  return true;
}
