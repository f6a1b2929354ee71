// The zero page (struct boot_params, arch/x86/include/uapi/asm/bootparam.h) for the 64-bit Linux boot protocol.
import type { GuestMemory } from '../../memory/guest-memory.js';
import { HDR } from './bzimage.js';
import { LAYOUT, type E820Entry } from './layout.js';

/** Offsets in struct boot_params. */
export const BOOT_PARAMS = {
  SIZE: 4096,
  EXT_RAMDISK_IMAGE: 0x0c0,
  EXT_RAMDISK_SIZE: 0x0c4,
  EXT_CMD_LINE_PTR: 0x0c8,
  E820_ENTRIES: 0x1e8,
  HDR: 0x1f1,
  E820_TABLE: 0x2d0,
  E820_MAX: 128,
  E820_ENTRY_SIZE: 20,
} as const;

const LOADFLAG_LOADED_HIGH = 0x01;
const LOADFLAG_CAN_USE_HEAP = 0x80;

export interface ZeroPageOptions {
  cmdlineGpa: number;
  cmdlineSize: number;
  e820: readonly E820Entry[];
  initrd?: { gpa: number; size: number } | undefined;
  /** The kernel's own setup header (bzImage); ELF kernels get a synthesized one. */
  setupHeader?: Uint8Array;
}

/** Builds boot_params as bytes (unit-testable), then `writeZeroPage` puts it at LAYOUT.ZERO_PAGE. */
export function buildZeroPage(opts: ZeroPageOptions): Uint8Array {
  const bp = new Uint8Array(BOOT_PARAMS.SIZE);
  const v = new DataView(bp.buffer);
  if (opts.setupHeader) {
    bp.set(opts.setupHeader.subarray(0, BOOT_PARAMS.SIZE - BOOT_PARAMS.HDR), BOOT_PARAMS.HDR);
  } else {
    v.setUint16(HDR.BOOT_FLAG, 0xaa55, true);
    v.setUint32(HDR.HEADER, 0x53726448, true); // "HdrS"
    v.setUint16(HDR.VERSION, 0x020f, true);
  }
  v.setUint16(0x1fa, 0xffff, true); // vid_mode: normal
  bp[HDR.TYPE_OF_LOADER] = 0xff; // undefined loader
  bp[HDR.LOADFLAGS] = (bp[HDR.LOADFLAGS] ?? 0) | LOADFLAG_LOADED_HIGH | LOADFLAG_CAN_USE_HEAP;
  v.setUint16(HDR.HEAP_END_PTR, 0xfe00, true);
  v.setUint32(HDR.CMD_LINE_PTR, opts.cmdlineGpa >>> 0, true);
  v.setUint32(BOOT_PARAMS.EXT_CMD_LINE_PTR, Math.floor(opts.cmdlineGpa / 2 ** 32), true);
  v.setUint32(HDR.CMDLINE_SIZE, opts.cmdlineSize, true);
  if (opts.initrd) {
    v.setUint32(HDR.RAMDISK_IMAGE, opts.initrd.gpa >>> 0, true);
    v.setUint32(HDR.RAMDISK_SIZE, opts.initrd.size >>> 0, true);
    v.setUint32(BOOT_PARAMS.EXT_RAMDISK_IMAGE, Math.floor(opts.initrd.gpa / 2 ** 32), true);
    v.setUint32(BOOT_PARAMS.EXT_RAMDISK_SIZE, Math.floor(opts.initrd.size / 2 ** 32), true);
  }
  const entries = opts.e820.slice(0, BOOT_PARAMS.E820_MAX);
  bp[BOOT_PARAMS.E820_ENTRIES] = entries.length;
  entries.forEach((e, i) => {
    const o = BOOT_PARAMS.E820_TABLE + i * BOOT_PARAMS.E820_ENTRY_SIZE;
    v.setBigUint64(o, BigInt(e.addr), true);
    v.setBigUint64(o + 8, BigInt(e.size), true);
    v.setUint32(o + 16, e.type, true);
  });
  return bp;
}

export function writeZeroPage(memory: GuestMemory, opts: ZeroPageOptions): number {
  memory.write(LAYOUT.ZERO_PAGE, buildZeroPage(opts));
  return LAYOUT.ZERO_PAGE;
}
