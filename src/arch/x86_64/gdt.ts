// Boot GDT entries (Intel SDM vol. 3 §3.4.5) and the segment/control-register state of each boot entry mode.
import { TypevisorError } from '../../base/errors.js';
import type { GuestMemory } from '../../memory/guest-memory.js';
import type { Regs, Segment, Sregs } from '../../kvm/structs.js';
import { LAYOUT } from './layout.js';

/** The special registers a boot entry sets (KVM's `Sregs` minus what KVM keeps itself). */
export type BootSregs = Omit<Sregs, 'cr2' | 'cr8' | 'apic_base' | 'interrupt_bitmap'>;
/** The general registers a boot entry sets; the rest start at zero. */
export type BootRegs = Partial<Regs>;

/** Encodes a descriptor from its flags (G, D/B, L, AVL, P, DPL, S, type as 0xF0FF-style), base and limit. */
export function gdtEntry(flags: number, base: number, limit: number): bigint {
  // `>>> 0` keeps bases at or above 2 GiB unsigned (JS bitwise results are signed 32-bit).
  return (BigInt((base & 0xff000000) >>> 0) << 32n) | (BigInt(flags & 0xf0ff) << 40n) | (BigInt(limit & 0xf0000) << 32n) |
    (BigInt(base & 0x00ffffff) << 16n) | BigInt(limit & 0xffff);
}

export const GDT_ENTRY = {
  /** 64-bit code, present, DPL 0, execute/read, accessed. */
  CODE64: gdtEntry(0xa09b, 0, 0xfffff),
  /** 32-bit flat code. */
  CODE32: gdtEntry(0xc09b, 0, 0xfffff),
  /** Flat data, read/write, accessed. */
  DATA: gdtEntry(0xc093, 0, 0xfffff),
  /** A busy 32/64-bit TSS (KVM needs a usable TR). */
  TSS: gdtEntry(0x008b, 0, 0x67),
} as const;

/** The kvm_segment a descriptor loads into a segment register's hidden part (the decoder of `gdtEntry`). */
export function flatSegment(entry: bigint, selector: number): Segment {
  const b = (shift: bigint, mask: bigint): number => Number((entry >> shift) & mask);
  const limitRaw = b(0n, 0xffffn) | (b(48n, 0xfn) << 16);
  const g = b(55n, 1n);
  return {
    base: BigInt(b(16n, 0xffffffn) | (b(56n, 0xffn) << 24)),
    limit: g ? limitRaw * 4096 + 4095 : limitRaw,
    selector,
    type: b(40n, 0xfn),
    s: b(44n, 1n),
    dpl: b(45n, 3n),
    present: b(47n, 1n),
    avl: b(52n, 1n),
    l: b(53n, 1n),
    db: b(54n, 1n),
    g,
    unusable: b(47n, 1n) ? 0 : 1,
  };
}

/** The descriptor that loads `s` (the inverse of `flatSegment`; a granular limit keeps its top 20 bits). */
export function gdtEntryFromSegment(s: Segment): bigint {
  const flags = (s.g << 15) | (s.db << 14) | (s.l << 13) | (s.avl << 12) | (s.present << 7) | (s.dpl << 5) | (s.s << 4) | (s.type & 0xf);
  return gdtEntry(flags, Number(BigInt.asUintN(32, s.base)), s.g ? Math.floor(s.limit / 4096) : s.limit);
}

/** Writes descriptors from LAYOUT.GDT on, entry i at selector i × 8. */
export function writeGdtEntries(memory: GuestMemory, entries: readonly bigint[]): void {
  if (entries.length > LAYOUT.GDT_MAX_ENTRIES) {
    throw new TypevisorError('INTERNAL', `a boot GDT of ${entries.length} entries would overrun the IDT at 0x${LAYOUT.IDT.toString(16)}`);
  }
  entries.forEach((e, i) => memory.setU64(LAYOUT.GDT + i * 8, e));
}

/**
 * The 64-bit boot protocol wants __BOOT_CS = 0x10 and __BOOT_DS = 0x18 (boot.rst, "64-bit boot
 * protocol"), so the GDT is [null, null, code64, data, tss].
 */
export function writeGdt(memory: GuestMemory): void {
  writeGdtEntries(memory, [0n, 0n, GDT_ENTRY.CODE64, GDT_ENTRY.DATA, GDT_ENTRY.TSS]);
  memory.setU64(LAYOUT.IDT, 0n);
}

const CR0_PE = 0x1n;
const CR0_ET = 0x10n;
const CR0_PG = 0x80000000n;
const CR4_PAE = 0x20n;
const EFER_LME = 0x100n;
const EFER_LMA = 0x400n;

/** Long mode with the identity page tables: entry at `entry`, RSI = the zero page. */
export function longModeBootState(entry: number): { regs: { rip: bigint; rsi: bigint; rsp: bigint; rbp: bigint; rflags: bigint }; sregs: BootSregs } {
  const code = flatSegment(GDT_ENTRY.CODE64, 0x10);
  const data = flatSegment(GDT_ENTRY.DATA, 0x18);
  const tss = flatSegment(GDT_ENTRY.TSS, 0x20);
  return {
    regs: { rip: BigInt(entry), rsi: BigInt(LAYOUT.ZERO_PAGE), rsp: BigInt(LAYOUT.BOOT_STACK), rbp: BigInt(LAYOUT.BOOT_STACK), rflags: 2n },
    sregs: {
      cs: code, ds: data, es: data, fs: data, gs: data, ss: data, tr: tss,
      ldt: { ...data, selector: 0, type: 2, s: 0, unusable: 1 },
      gdt: { base: BigInt(LAYOUT.GDT), limit: 5 * 8 - 1 },
      idt: { base: BigInt(LAYOUT.IDT), limit: 7 },
      cr0: CR0_PE | CR0_ET | CR0_PG,
      cr3: BigInt(LAYOUT.PML4),
      cr4: CR4_PAE,
      efer: EFER_LME | EFER_LMA,
    },
  };
}

/** A real-mode segment register as the CPU holds it after loading `selector` (base = selector × 16). */
function realModeSegment(selector: number, code: boolean): Segment {
  return {
    base: BigInt(selector * 16), limit: 0xffff, selector, type: code ? 0xb : 0x3, present: 1, dpl: 0, db: 0,
    s: 1, l: 0, g: 0, avl: 0, unusable: 0,
  };
}

/**
 * The 16-bit Linux boot protocol entry (boot.rst, "Running the kernel"): real mode, CS = setup
 * segment + 0x20 at IP 0, the other segments = the setup segment, the stack inside the setup heap.
 */
export function realModeBootState(setupSegment: number, stackPointer: number): { regs: { rip: bigint; rsp: bigint; rflags: bigint }; sregs: BootSregs } {
  const data = realModeSegment(setupSegment, false);
  return {
    regs: { rip: 0n, rsp: BigInt(stackPointer), rflags: 2n },
    sregs: {
      cs: realModeSegment(setupSegment + 0x20, true), ds: data, es: data, fs: data, gs: data, ss: data,
      tr: { ...realModeSegment(0, true), type: 0xb, s: 0 },
      ldt: { ...realModeSegment(0, false), type: 2, s: 0 },
      gdt: { base: 0n, limit: 0xffff },
      idt: { base: 0n, limit: 0x3ff },
      cr0: CR0_ET,
      cr3: 0n,
      cr4: 0n,
      efer: 0n,
    },
  };
}
