// The PVH boot ABI (Xen's arch-x86/hvm/start_info.h, version 1): start_info, memory map, modules; 32-bit entry state.
import type { GuestMemory } from '../../memory/guest-memory.js';
import type { Regs } from '../../kvm/structs.js';
import { LAYOUT, type E820Entry } from './layout.js';
import { flatSegment, writeGdtEntries, GDT_ENTRY, type BootSregs } from './gdt.js';

export const HVM_START_MAGIC = 0x336ec578;
const MEMMAP_ENTRY_SIZE = 24;
const MODLIST_ENTRY_SIZE = 32;

export interface PvhOptions {
  cmdlineGpa: number;
  e820: readonly E820Entry[];
  initrd?: { gpa: number; size: number } | undefined;
}

/** Builds start_info + its memory map + module list as one blob placed at LAYOUT.PVH_START_INFO. */
export function buildPvhStartInfo(opts: PvhOptions): Uint8Array {
  const blob = new Uint8Array(LAYOUT.PVH_MODLIST + MODLIST_ENTRY_SIZE - LAYOUT.PVH_START_INFO);
  const v = new DataView(blob.buffer);
  const at = (gpa: number): number => gpa - LAYOUT.PVH_START_INFO;
  v.setUint32(0, HVM_START_MAGIC, true);
  v.setUint32(4, 1, true); // version 1: has the memory map
  v.setUint32(12, opts.initrd ? 1 : 0, true); // nr_modules
  v.setBigUint64(16, BigInt(opts.initrd ? LAYOUT.PVH_MODLIST : 0), true);
  v.setBigUint64(24, BigInt(opts.cmdlineGpa), true);
  v.setBigUint64(32, 0n, true); // rsdp_paddr: no ACPI yet
  v.setBigUint64(40, BigInt(LAYOUT.PVH_MEMMAP), true);
  v.setUint32(48, opts.e820.length, true);
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

export function writePvhStartInfo(memory: GuestMemory, opts: PvhOptions): number {
  memory.write(LAYOUT.PVH_START_INFO, buildPvhStartInfo(opts));
  return LAYOUT.PVH_START_INFO;
}

/** PVH entry: 32-bit protected mode, paging off, flat CS/DS/ES/SS, EBX = start_info. */
export function pvhBootState(memory: GuestMemory, entry: number, startInfo: number): { regs: Partial<Regs>; sregs: BootSregs } {
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
      cr0: 0x11n, // PE | ET
      cr3: 0n,
      cr4: 0n,
      efer: 0n,
    },
  };
}
