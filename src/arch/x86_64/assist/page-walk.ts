// Guest linear → physical translation through the guest's own page tables (Intel SDM vol. 3A ch. 4).
import type { GuestMemory } from '../../../memory/guest-memory.js';

/** The control registers that select the paging mode, as KVM_GET_SREGS reports them. */
export interface PagingState {
  cr0: bigint;
  cr3: bigint;
  cr4: bigint;
  efer: bigint;
}

/** How the address is used: writes honour R/W (with CR0.WP), user accesses honour U/S. */
export interface Access {
  write?: boolean;
  user?: boolean;
}

export type FaultReason = 'not-present' | 'outside-ram' | 'reserved' | 'non-canonical' | 'protection';

/** A failed translation: what a #PF (or #GP, for non-canonical) would have reported. */
export interface TranslationFault {
  fault: string;
  reason: FaultReason;
  /** Paging-structure level where the walk stopped (5 = PML5 … 1 = PT), when it got that far. */
  level?: number;
}

export type Translation = { gpa: number } | TranslationFault;

const CR0_WP = 1n << 16n;
const CR0_PG = 1n << 31n;
const CR4_PSE = 1n << 4n;
const CR4_PAE = 1n << 5n;
const CR4_LA57 = 1n << 12n;
const EFER_LMA = 1n << 10n;
const P = 1n;
const RW = 2n;
const US = 4n;
const PS = 1n << 7n;
const ADDR_MASK = 0x000ffffffffff000n;
const PAGE = 4096;

/**
 * Translates a linear address. Every table read is bounds-checked against guest RAM: a table
 * pointer outside RAM, a not-present entry or a reserved large-page bit is a fault, never an
 * exception, because the tables are guest-controlled. The final page itself may lie outside
 * RAM (MMIO); callers check the data access separately.
 */
export function translate(memory: GuestMemory, linear: bigint, s: PagingState, access: Access = {}): Translation {
  if ((s.cr0 & CR0_PG) === 0n) return { gpa: Number(BigInt.asUintN(32, linear)) };
  if (s.efer & EFER_LMA) return walkLong(memory, BigInt.asUintN(64, linear), s, access);
  if (s.cr4 & CR4_PAE) return walkPae(memory, BigInt.asUintN(32, linear), s, access);
  return walk32(memory, BigInt.asUintN(32, linear), s, access);
}

function readEntry(memory: GuestMemory, gpa: bigint, size: 4 | 8): bigint | undefined {
  const a = Number(gpa);
  if (!memory.contains(a, size)) return undefined;
  return size === 8 ? memory.getU64(a) : BigInt(memory.getU32(a));
}

const hex = (v: bigint): string => `0x${v.toString(16)}`;

/**
 * Permission bits are ANDed over the levels of a walk (SDM 4.6): one read-only level makes the
 * page read-only. Supervisor writes ignore R/W only while CR0.WP is clear.
 */
class Rights {
  private rw = true;
  private us = true;
  add(entry: bigint): void {
    this.rw &&= (entry & RW) !== 0n;
    this.us &&= (entry & US) !== 0n;
  }
  check(s: PagingState, access: Access, va: bigint): TranslationFault | undefined {
    if (access.user && !this.us) return { fault: `supervisor page at ${hex(va)} accessed from user mode`, reason: 'protection' };
    if (access.write && !this.rw && (access.user || (s.cr0 & CR0_WP) !== 0n)) {
      return { fault: `write to read-only page at ${hex(va)}`, reason: 'protection' };
    }
    return undefined;
  }
}

function walkLong(memory: GuestMemory, va: bigint, s: PagingState, access: Access): Translation {
  const levels = s.cr4 & CR4_LA57 ? 5 : 4;
  const bits = levels === 5 ? 57 : 48;
  if (BigInt.asUintN(64, BigInt.asIntN(bits, va)) !== va) {
    return { fault: `non-canonical address ${hex(va)}`, reason: 'non-canonical' };
  }
  const rights = new Rights();
  let table = s.cr3 & ADDR_MASK;
  for (let level = levels; level >= 1; level--) {
    const shift = 12n + 9n * BigInt(level - 1);
    const index = (va >> shift) & 0x1ffn;
    const entry = readEntry(memory, table + index * 8n, 8);
    if (entry === undefined) {
      return { fault: `level-${level} table at ${hex(table)} is outside guest RAM`, reason: 'outside-ram', level };
    }
    if ((entry & P) === 0n) return { fault: `not present at level ${level} (${hex(va)})`, reason: 'not-present', level };
    rights.add(entry);
    if (entry & PS && level !== 1) {
      // PS is a 1 GiB page in a PDPTE, 2 MiB in a PDE, and reserved in PML4E/PML5E.
      if (level > 3) return { fault: `PS set in a level-${level} entry (${hex(va)})`, reason: 'reserved', level };
      const pageMask = (1n << shift) - 1n;
      return rights.check(s, access, va) ?? { gpa: Number((entry & ADDR_MASK & ~pageMask) | (va & pageMask)) };
    }
    table = entry & ADDR_MASK;
  }
  return rights.check(s, access, va) ?? { gpa: Number(table | (va & 0xfffn)) };
}

function walkPae(memory: GuestMemory, va: bigint, s: PagingState, access: Access): Translation {
  const rights = new Rights();
  // PDPTEs carry no R/W or U/S bits (SDM 4.4.1): they do not take part in the rights.
  const pdpteAddr = (s.cr3 & 0xffffffe0n) + ((va >> 30n) & 3n) * 8n;
  const pdpte = readEntry(memory, pdpteAddr, 8);
  if (pdpte === undefined) return { fault: `PDPT at ${hex(pdpteAddr)} is outside guest RAM`, reason: 'outside-ram', level: 3 };
  if ((pdpte & P) === 0n) return { fault: `PDPTE not present (${hex(va)})`, reason: 'not-present', level: 3 };
  const pdeAddr = (pdpte & ADDR_MASK) + ((va >> 21n) & 0x1ffn) * 8n;
  const pde = readEntry(memory, pdeAddr, 8);
  if (pde === undefined) return { fault: `page directory at ${hex(pdeAddr)} is outside guest RAM`, reason: 'outside-ram', level: 2 };
  if ((pde & P) === 0n) return { fault: `PDE not present (${hex(va)})`, reason: 'not-present', level: 2 };
  rights.add(pde);
  if (pde & PS) return rights.check(s, access, va) ?? { gpa: Number((pde & ADDR_MASK & ~0x1fffffn) | (va & 0x1fffffn)) };
  const pteAddr = (pde & ADDR_MASK) + ((va >> 12n) & 0x1ffn) * 8n;
  const pte = readEntry(memory, pteAddr, 8);
  if (pte === undefined) return { fault: `page table at ${hex(pteAddr)} is outside guest RAM`, reason: 'outside-ram', level: 1 };
  if ((pte & P) === 0n) return { fault: `PTE not present (${hex(va)})`, reason: 'not-present', level: 1 };
  rights.add(pte);
  return rights.check(s, access, va) ?? { gpa: Number((pte & ADDR_MASK) | (va & 0xfffn)) };
}

function walk32(memory: GuestMemory, va: bigint, s: PagingState, access: Access): Translation {
  const rights = new Rights();
  const pdeAddr = (s.cr3 & 0xfffff000n) + (va >> 22n) * 4n;
  const pde = readEntry(memory, pdeAddr, 4);
  if (pde === undefined) return { fault: `page directory at ${hex(pdeAddr)} is outside guest RAM`, reason: 'outside-ram', level: 2 };
  if ((pde & P) === 0n) return { fault: `PDE not present (${hex(va)})`, reason: 'not-present', level: 2 };
  rights.add(pde);
  if (pde & PS && s.cr4 & CR4_PSE) {
    // PSE-36: PDE bits 20:13 are physical address bits 39:32 of a 4 MiB page.
    const high = ((pde >> 13n) & 0xffn) << 32n;
    return rights.check(s, access, va) ?? { gpa: Number(high | (pde & 0xffc00000n) | (va & 0x3fffffn)) };
  }
  const pteAddr = (pde & 0xfffff000n) + ((va >> 12n) & 0x3ffn) * 4n;
  const pte = readEntry(memory, pteAddr, 4);
  if (pte === undefined) return { fault: `page table at ${hex(pteAddr)} is outside guest RAM`, reason: 'outside-ram', level: 1 };
  if ((pte & P) === 0n) return { fault: `PTE not present (${hex(va)})`, reason: 'not-present', level: 1 };
  rights.add(pte);
  return rights.check(s, access, va) ?? { gpa: Number((pte & 0xfffff000n) | (va & 0xfffn)) };
}

/** The guest-physical pieces of [linear, linear+length), one per page, or the first fault. */
function pieces(memory: GuestMemory, linear: bigint, length: number, s: PagingState, access: Access):
  { gpa: number; from: number; n: number }[] | TranslationFault {
  const out: { gpa: number; from: number; n: number }[] = [];
  let done = 0;
  while (done < length) {
    const va = linear + BigInt(done);
    const t = translate(memory, va, s, access);
    if (!('gpa' in t)) return t;
    const n = Math.min(length - done, PAGE - (t.gpa % PAGE));
    if (!memory.contains(t.gpa, n)) {
      return { fault: `${hex(va)} maps to 0x${t.gpa.toString(16)}, which is not guest RAM`, reason: 'outside-ram' };
    }
    out.push({ gpa: t.gpa, from: done, n });
    done += n;
  }
  return out;
}

/** Reads `length` bytes at a linear address, translating each page; the fault if any byte is unmapped. */
export function readLinearChecked(memory: GuestMemory, linear: bigint, length: number, s: PagingState,
  access: Access = {}): Uint8Array | TranslationFault {
  const p = pieces(memory, linear, length, s, access);
  if (!Array.isArray(p)) return p;
  const out = new Uint8Array(length);
  for (const { gpa, from, n } of p) out.set(memory.slice(gpa, n), from);
  return out;
}

/** Reads `length` bytes at a linear address, translating each page; undefined if any byte is unmapped. */
export function readLinear(memory: GuestMemory, linear: bigint, length: number, s: PagingState,
  access: Access = {}): Uint8Array | undefined {
  const r = readLinearChecked(memory, linear, length, s, access);
  return r instanceof Uint8Array ? r : undefined;
}

/**
 * Writes bytes at a linear address, translating each page as a write. All pages are translated
 * before any byte is written, so a fault leaves guest memory untouched (as the CPU does).
 */
export function writeLinear(memory: GuestMemory, linear: bigint, data: Uint8Array, s: PagingState,
  access: Access = {}): true | TranslationFault {
  const p = pieces(memory, linear, data.length, s, { ...access, write: true });
  if (!Array.isArray(p)) return p;
  for (const { gpa, from, n } of p) memory.write(gpa, data.subarray(from, from + n));
  return true;
}
