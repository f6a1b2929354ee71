// The x86-64 guest physical memory map Typevisor builds (PC layout: ACPI 6.5 §15 E820 types, a 32-bit PCI hole below 4 GiB).
import { TypevisorError } from '../../base/errors.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

/**
 * Fixed guest-physical addresses of the boot structures. Everything sits below the EBDA in
 * conventional memory, which Linux reserves for itself early (so the boot data cannot be
 * overwritten before the kernel has read it) — the same places Firecracker uses.
 */
export const LAYOUT = {
  /** Boot GDT: up to five 8-byte entries (the 64-bit boot uses selectors up to 0x20), then a null IDT after it. */
  GDT: 0x500,
  GDT_MAX_ENTRIES: 5,
  IDT: 0x528,
  /** PVH: struct hvm_start_info, its memory map (up to 157 entries), its module list. */
  PVH_START_INFO: 0x6000,
  PVH_MEMMAP: 0x6040,
  PVH_MODLIST: 0x6f00,
  /** struct boot_params for the Linux boot protocol. */
  ZERO_PAGE: 0x7000,
  /** Initial RSP/RBP: grows down through 0x8000-0x8fef, clear of the zero page and page tables. */
  BOOT_STACK: 0x8ff0,
  PML4: 0x9000,
  PDPT: 0xa000,
  /** Four page directories (0xb000-0xefff) map the first 4 GiB with 2 MiB pages. */
  PD: 0xb000,
  CMDLINE: 0x20000,
  /** Bytes reserved for the command line including its NUL (Linux's COMMAND_LINE_SIZE is 2048). */
  CMDLINE_MAX: 2048,
  /** The extended BIOS data area: [EBDA, 1 MiB) is reserved like on a PC (VGA hole, option ROMs, BIOS). */
  EBDA: 0x9fc00,
  /**
   * ACPI tables: the RSDP at the start of the BIOS area Linux scans for it (0xE0000-0xFFFFF),
   * the other tables after it, all inside the reserved range below 1 MiB.
   */
  ACPI_TABLES: 0xe0000,
  ACPI_TABLES_END: 0x100000,
  /** 1 MiB: where protected-mode kernels are loaded (boot.rst, "loading the rest of the kernel"). */
  HIGH_MEMORY: 0x100000,
  /** RAM below 4 GiB ends here; [3 GiB, 4 GiB) is the hole for PCI MMIO, the IOAPIC and the LAPIC. */
  MMIO_HOLE_START: 3 * GiB,
  MMIO_HOLE_END: 4 * GiB,
  /** PCI: 32-bit BARs go in [PCI_MMIO32, ECAM); ECAM (MCFG) covers bus 0 only; 64-bit BARs above RAM. */
  PCI_MMIO32: 0xc0000000,
  PCI_ECAM: 0xe0000000,
  PCI_ECAM_SIZE: 0x100000,
  IOAPIC: 0xfec00000,
  LAPIC: 0xfee00000,
} as const;

/** I/O ports and interrupt lines of the platform devices the ACPI tables describe. */
export const PLATFORM = {
  /** Hardware-reduced ACPI sleep control / status registers and the reset register (one byte each). */
  ACPI_SLEEP_CONTROL_PORT: 0x600,
  ACPI_SLEEP_STATUS_PORT: 0x601,
  ACPI_RESET_PORT: 0x602,
  ACPI_RESET_VALUE: 0x01,
  /** SLP_TYP the DSDT's \_S5 gives: written with SLP_EN to the sleep control register to power off. */
  S5_SLEEP_TYPE: 5,
  /** The Generic Event Device's interrupt (an IOAPIC pin above the ISA range, edge, active high). */
  GED_GSI: 16,
  IOAPIC_PINS: 24,
  /** xAPIC MADT entries hold 8-bit APIC IDs and 0xFF is the broadcast ID. */
  MAX_VCPUS: 254,
} as const;

/** Where 64-bit PCI BARs go: from the first 1 GiB boundary above RAM, 64 GiB, inside the 46-bit physical space. */
export function pciMmio64Window(memoryBytes: number): { base: number; size: number } {
  const regions = ramRegions(memoryBytes);
  const last = regions[regions.length - 1]!;
  const end = Math.max(last.gpa + last.size, LAYOUT.MMIO_HOLE_END);
  const base = Math.ceil(end / GiB) * GiB;
  return { base, size: Math.min(64 * GiB, 2 ** 46 - base) };
}

/** Below this a stock kernel cannot even decompress itself (init_size alone is tens of MiB). */
export const MIN_MEMORY = 16 * MiB;
/** The highest RAM address (size + the 1 GiB hole) stays below 2^46, the guest physical width we promise. */
export const MAX_MEMORY = 2 ** 46 - LAYOUT.MMIO_HOLE_END;

/** E820 entry types (ACPI 6.5 table 15.312, "Address Range Types"). */
export const E820 = { RAM: 1, RESERVED: 2, ACPI: 3, NVS: 4, UNUSABLE: 5 } as const;

export interface E820Entry {
  addr: number;
  size: number;
  type: number;
}

/** Throws unless `bytes` is a whole number of 4 KiB pages in [MIN_MEMORY, MAX_MEMORY]. */
export function validateMemorySize(bytes: number): void {
  if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes % 4096 !== 0) {
    throw new TypevisorError('INVALID_ARGUMENT', `guest memory ${bytes} bytes is not a whole number of 4 KiB pages`);
  }
  if (bytes < MIN_MEMORY) {
    throw new TypevisorError('INVALID_ARGUMENT', `guest memory must be at least 16 MiB (got ${(bytes / MiB).toFixed(2)} MiB)`);
  }
  if (bytes > MAX_MEMORY) {
    throw new TypevisorError('MEMORY_TOO_LARGE',
      `guest memory of ${(bytes / GiB).toFixed(0)} GiB is beyond what Typevisor maps (at most ${MAX_MEMORY / GiB} GiB)`);
  }
}

/** Guest RAM as regions: one below the PCI hole and, for guests over 3 GiB, the rest from 4 GiB. */
export function ramRegions(bytes: number): { gpa: number; size: number }[] {
  validateMemorySize(bytes);
  const low = Math.min(bytes, LAYOUT.MMIO_HOLE_START);
  const regions = [{ gpa: 0, size: low }];
  if (bytes > low) regions.push({ gpa: LAYOUT.MMIO_HOLE_END, size: bytes - low });
  return regions;
}

/** The e820 map the guest sees: low RAM, the EBDA/BIOS area reserved, RAM from 1 MiB split around the hole. */
export function e820Map(bytes: number): E820Entry[] {
  const regions = ramRegions(bytes);
  const low = regions[0]!.size;
  const map: E820Entry[] = [
    { addr: 0, size: LAYOUT.EBDA, type: E820.RAM },
    { addr: LAYOUT.EBDA, size: LAYOUT.HIGH_MEMORY - LAYOUT.EBDA, type: E820.RESERVED },
    { addr: LAYOUT.HIGH_MEMORY, size: low - LAYOUT.HIGH_MEMORY, type: E820.RAM },
  ];
  // The ECAM window is reserved, as Linux wants MCFG regions to be (or it falls back to port I/O).
  map.push({ addr: LAYOUT.PCI_ECAM, size: LAYOUT.PCI_ECAM_SIZE, type: E820.RESERVED });
  if (regions[1]) map.push({ addr: regions[1].gpa, size: regions[1].size, type: E820.RAM });
  return map;
}
