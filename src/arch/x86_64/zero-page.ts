// The zero page: struct boot_params of the Linux x86 boot protocol (arch/x86/include/uapi/asm/bootparam.h, boot.rst "64-bit boot protocol").
import { TypevisorError } from '../../base/errors.js';
import type { GuestMemory } from '../../memory/guest-memory.js';
import { CAN_USE_HEAP, HDR, HDRS_MAGIC, LOADED_HIGH } from './bzimage.js';
import { LAYOUT, type E820Entry } from './layout.js';

/** Offsets in struct boot_params (the setup header fields keep their image offsets, see HDR). */
export const BOOT_PARAMS = {
  SIZE: 4096,
  /** u64 acpi_rsdp_addr: lets the kernel find ACPI without scanning the BIOS area. */
  ACPI_RSDP_ADDR: 0x070,
  /** u32 ext_ramdisk_image / ext_ramdisk_size / ext_cmd_line_ptr: bits 63:32 of the header fields. */
  EXT_RAMDISK_IMAGE: 0x0c0,
  EXT_RAMDISK_SIZE: 0x0c4,
  EXT_CMD_LINE_PTR: 0x0c8,
  /** u8 e820_entries. */
  E820_ENTRIES: 0x1e8,
  /** struct setup_header hdr. */
  HDR: 0x1f1,
  /** struct boot_e820_entry e820_table[E820_MAX_ENTRIES_ZEROPAGE]: {u64 addr, u64 size, u32 type}, packed. */
  E820_TABLE: 0x2d0,
  E820_MAX: 128,
  E820_ENTRY_SIZE: 20,
} as const;

/** The boot protocol version we claim for a synthesized header: 2.15, the newest whose fields we fill. */
const SYNTHETIC_VERSION = 0x020f;
/**
 * heap_end_ptr, relative to the real-mode setup code (used only by the 16-bit entry): boot.rst's
 * sample loader puts the stack at 0xe000 and the heap end 0x200 below it, so they never meet.
 */
export const HEAP_END_PTR = 0xde00;

export interface ZeroPageOptions {
  cmdlineGpa: number;
  /** Length of the command line without its NUL. */
  cmdlineSize: number;
  e820: readonly E820Entry[];
  initrd?: { gpa: number; size: number } | undefined;
  /** The kernel's own setup header (bzImage); ELF kernels get a synthesized one. */
  setupHeader?: Uint8Array | undefined;
  /** Guest address of the ACPI RSDP, when the VM has ACPI tables. */
  rsdpAddr?: number | undefined;
}

/** Builds boot_params as bytes (unit-testable); `writeZeroPage` puts it at LAYOUT.ZERO_PAGE. */
export function buildZeroPage(opts: ZeroPageOptions): Uint8Array {
  const bp = new Uint8Array(BOOT_PARAMS.SIZE);
  const v = new DataView(bp.buffer);
  if (opts.setupHeader) {
    bp.set(opts.setupHeader.subarray(0, BOOT_PARAMS.SIZE - BOOT_PARAMS.HDR), BOOT_PARAMS.HDR);
    // The kernel says how long a command line it takes (2.06+); longer ones would be cut silently.
    const max = v.getUint32(HDR.CMDLINE_SIZE, true);
    if (opts.setupHeader.length >= HDR.CMDLINE_SIZE + 4 - HDR.SETUP_SECTS && opts.cmdlineSize > max) {
      throw new TypevisorError('INVALID_ARGUMENT', `the kernel command line is ${opts.cmdlineSize} bytes; this kernel accepts at most ${max}`);
    }
  } else {
    v.setUint16(HDR.BOOT_FLAG, 0xaa55, true);
    v.setUint32(HDR.HEADER, HDRS_MAGIC, true);
    v.setUint16(HDR.VERSION, SYNTHETIC_VERSION, true);
  }
  v.setUint16(HDR.VID_MODE, 0xffff, true); // "normal" text mode: no mode switch
  bp[HDR.TYPE_OF_LOADER] = 0xff; // "undefined" boot loader id
  bp[HDR.LOADFLAGS] = bp[HDR.LOADFLAGS]! | LOADED_HIGH | CAN_USE_HEAP;
  v.setUint16(HDR.HEAP_END_PTR, HEAP_END_PTR, true);
  v.setUint32(HDR.HARDWARE_SUBARCH, 0, true); // X86_SUBARCH_PC
  setSplit(v, HDR.CMD_LINE_PTR, BOOT_PARAMS.EXT_CMD_LINE_PTR, opts.cmdlineGpa);
  // Like Firecracker, report the actual length (the kernel copies up to COMMAND_LINE_SIZE anyway).
  v.setUint32(HDR.CMDLINE_SIZE, opts.cmdlineSize, true);
  if (opts.initrd) {
    setSplit(v, HDR.RAMDISK_IMAGE, BOOT_PARAMS.EXT_RAMDISK_IMAGE, opts.initrd.gpa);
    setSplit(v, HDR.RAMDISK_SIZE, BOOT_PARAMS.EXT_RAMDISK_SIZE, opts.initrd.size);
  }
  if (opts.rsdpAddr !== undefined) v.setBigUint64(BOOT_PARAMS.ACPI_RSDP_ADDR, BigInt(opts.rsdpAddr), true);
  if (opts.e820.length > BOOT_PARAMS.E820_MAX) {
    throw new TypevisorError('INVALID_ARGUMENT', `the e820 map has ${opts.e820.length} entries; the zero page holds ${BOOT_PARAMS.E820_MAX}`);
  }
  bp[BOOT_PARAMS.E820_ENTRIES] = opts.e820.length;
  opts.e820.forEach((e, i) => {
    const o = BOOT_PARAMS.E820_TABLE + i * BOOT_PARAMS.E820_ENTRY_SIZE;
    v.setBigUint64(o, BigInt(e.addr), true);
    v.setBigUint64(o + 8, BigInt(e.size), true);
    v.setUint32(o + 16, e.type, true);
  });
  return bp;
}

/** Writes a value above 32 bits as the header's low half plus its ext_* high half. */
function setSplit(v: DataView, low: number, high: number, value: number): void {
  v.setUint32(low, value >>> 0, true);
  v.setUint32(high, Math.floor(value / 2 ** 32), true);
}

/** Writes boot_params at LAYOUT.ZERO_PAGE; returns that address (RSI at the 64-bit entry). */
export function writeZeroPage(memory: GuestMemory, opts: ZeroPageOptions): number {
  memory.write(LAYOUT.ZERO_PAGE, buildZeroPage(opts));
  return LAYOUT.ZERO_PAGE;
}
