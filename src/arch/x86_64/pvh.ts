// The PVH boot ABI (Xen's public/arch-x86/hvm/start_info.h version 1, docs/misc/pvh.pandoc): start_info, memory map, modules, 32-bit entry state.
import { TypevisorError } from '../../base/errors.js';
import type { GuestMemory } from '../../memory/guest-memory.js';
import { LAYOUT, type E820Entry } from './layout.js';
import { flatSegment, writeGdtEntries, GDT_ENTRY, type BootRegs, type BootSregs } from './gdt.js';

export const HVM_START_MAGIC = 0x336ec578;
/**
 * struct hvm_start_info: u32 magic @0, version @4, flags @8, nr_modules @12; u64 modlist_paddr @16,
 * cmdline_paddr @24, rsdp_paddr @32, memmap_paddr @40; u32 memmap_entries @48, reserved @52 (56 bytes).
 */
export const START_INFO = {
  MAGIC: 0, VERSION: 4, FLAGS: 8, NR_MODULES: 12, MODLIST_PADDR: 16, CMDLINE_PADDR: 24,
  RSDP_PADDR: 32, MEMMAP_PADDR: 40, MEMMAP_ENTRIES: 48, SIZE: 56,
} as const;
/** struct hvm_memmap_table_entry: u64 addr, u64 size, u32 type (e820 types), u32 reserved. */
const MEMMAP_ENTRY_SIZE = 24;
/** struct hvm_modlist_entry: u64 paddr, u64 size, u64 cmdline_paddr, u64 reserved. */
const MODLIST_ENTRY_SIZE = 32;
/** The memory map must end before the module list. */
export const PVH_MEMMAP_MAX = (LAYOUT.PVH_MODLIST - LAYOUT.PVH_MEMMAP) / MEMMAP_ENTRY_SIZE;

export interface PvhOptions {
  cmdlineGpa: number;
  e820: readonly E820Entry[];
  /** The initrd, passed as the first (only) module, as Linux expects. */
  initrd?: { gpa: number; size: number } | undefined;
  /** Guest address of the ACPI RSDP; 0/absent makes the kernel scan for it (and find none). */
  rsdpAddr?: number | undefined;
}

/** Builds start_info + its memory map + module list as one blob to place at LAYOUT.PVH_START_INFO. */
export function buildPvhStartInfo(opts: PvhOptions): Uint8Array {
  if (opts.e820.length > PVH_MEMMAP_MAX) {
    throw new TypevisorError('INVALID_ARGUMENT', `the memory map has ${opts.e820.length} entries; PVH start_info holds ${PVH_MEMMAP_MAX}`);
  }
  const blob = new Uint8Array(LAYOUT.PVH_MODLIST + MODLIST_ENTRY_SIZE - LAYOUT.PVH_START_INFO);
  const v = new DataView(blob.buffer);
  const at = (gpa: number): number => gpa - LAYOUT.PVH_START_INFO;
  v.setUint32(START_INFO.MAGIC, HVM_START_MAGIC, true);
  v.setUint32(START_INFO.VERSION, 1, true); // version 1: has memmap_paddr/memmap_entries
  v.setUint32(START_INFO.NR_MODULES, opts.initrd ? 1 : 0, true);
  v.setBigUint64(START_INFO.MODLIST_PADDR, BigInt(opts.initrd ? LAYOUT.PVH_MODLIST : 0), true);
  v.setBigUint64(START_INFO.CMDLINE_PADDR, BigInt(opts.cmdlineGpa), true);
  v.setBigUint64(START_INFO.RSDP_PADDR, BigInt(opts.rsdpAddr ?? 0), true);
  v.setBigUint64(START_INFO.MEMMAP_PADDR, BigInt(LAYOUT.PVH_MEMMAP), true);
  v.setUint32(START_INFO.MEMMAP_ENTRIES, opts.e820.length, true);
  opts.e820.forEach((e, i) => {
    const o = at(LAYOUT.PVH_MEMMAP) + i * MEMMAP_ENTRY_SIZE;
    v.setBigUint64(o, BigInt(e.addr), true);
    v.setBigUint64(o + 8, BigInt(e.size), true);
    v.setUint32(o + 16, e.type, true);
  });
  if (opts.initrd) {
    const o = at(LAYOUT.PVH_MODLIST);
    v.setBigUint64(o, BigInt(opts.initrd.gpa), true);
    v.setBigUint64(o + 8, BigInt(opts.initrd.size), true);
  }
  return blob;
}

/** Writes start_info and its tables; returns the start_info address (EBX at the entry). */
export function writePvhStartInfo(memory: GuestMemory, opts: PvhOptions): number {
  memory.write(LAYOUT.PVH_START_INFO, buildPvhStartInfo(opts));
  return LAYOUT.PVH_START_INFO;
}

const CR0_PE = 0x1n;
const CR0_ET = 0x10n;

/**
 * PVH entry (pvh.pandoc): 32-bit protected mode, paging off, CS flat 32-bit code, DS/ES/SS flat
 * data, TR a 32-bit TSS, EBX = start_info, EFLAGS with IF and VM clear. Writes the GDT those
 * selectors name: [null, code32 0x08, data 0x10, tss 0x18].
 */
export function pvhBootState(memory: GuestMemory, entry: number, startInfo: number): { regs: BootRegs; sregs: BootSregs } {
  writeGdtEntries(memory, [0n, GDT_ENTRY.CODE32, GDT_ENTRY.DATA, GDT_ENTRY.TSS]);
  const code = flatSegment(GDT_ENTRY.CODE32, 0x08);
  const data = flatSegment(GDT_ENTRY.DATA, 0x10);
  const tss = flatSegment(GDT_ENTRY.TSS, 0x18);
  return {
    regs: { rip: BigInt(entry), rbx: BigInt(startInfo), rflags: 2n },
    sregs: {
      cs: code, ds: data, es: data, fs: data, gs: data, ss: data, tr: tss,
      ldt: { ...data, selector: 0, type: 2, s: 0, unusable: 1 },
      gdt: { base: BigInt(LAYOUT.GDT), limit: 4 * 8 - 1 },
      idt: { base: 0n, limit: 0 },
      cr0: CR0_PE | CR0_ET,
      cr3: 0n,
      cr4: 0n,
      efer: 0n,
    },
  };
}
