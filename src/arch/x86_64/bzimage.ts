// bzImage loading per the Linux x86 boot protocol (Documentation/arch/x86/boot.rst), version ≥ 2.06.
import { TypevisorError } from '../../base/errors.js';
import type { GuestMemory } from '../../memory/guest-memory.js';
import { LAYOUT } from './layout.js';

/** Offsets in the boot sector / setup header. */
export const HDR = {
  SETUP_SECTS: 0x1f1,
  BOOT_FLAG: 0x1fe,
  HEADER: 0x202,
  VERSION: 0x206,
  TYPE_OF_LOADER: 0x210,
  LOADFLAGS: 0x211,
  RAMDISK_IMAGE: 0x218,
  RAMDISK_SIZE: 0x21c,
  HEAP_END_PTR: 0x224,
  CMD_LINE_PTR: 0x228,
  INITRD_ADDR_MAX: 0x22c,
  XLOADFLAGS: 0x236,
  CMDLINE_SIZE: 0x238,
  INIT_SIZE: 0x260,
} as const;

const XLF_KERNEL_64 = 0x1;
/** The setup header ends at 0x268 in protocol 2.15; copy up to the jump's target bound. */
export const SETUP_HEADER_END = 0x280;

export interface BzImage {
  version: number;
  setupSects: number;
  /** Bytes 0x1f1..SETUP_HEADER_END of the image, for the zero page. */
  setupHeader: Uint8Array;
  /** The 64-bit entry point (protected-mode kernel + 0x200), when XLF_KERNEL_64 is set. */
  entry64: number;
  has64BitEntry: boolean;
  initrdAddrMax: number;
  initSize: number;
  /** Offset in the file of the protected-mode kernel. */
  kernelOffset: number;
}

export function parseBzImage(image: Uint8Array, path = 'kernel'): BzImage {
  const bad = (why: string): never => {
    throw new TypevisorError('KERNEL_FORMAT', `${path} is neither an ELF vmlinux nor a bzImage: ${why}`);
  };
  if (image.length < 0x400) bad('too short');
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (v.getUint32(HDR.HEADER, true) !== 0x53726448) bad('no "HdrS" boot header');
  const version = v.getUint16(HDR.VERSION, true);
  if (version < 0x206) {
    throw new TypevisorError('KERNEL_FORMAT', `${path} uses boot protocol ${version >> 8}.${version & 0xff}; Typevisor needs 2.06 or later`);
  }
  const setupSects = image[HDR.SETUP_SECTS] || 4;
  const kernelOffset = (setupSects + 1) * 512;
  if (kernelOffset > image.length) bad('setup code runs past the end of the file');
  const xloadflags = version >= 0x20c ? v.getUint16(HDR.XLOADFLAGS, true) : 0;
  return {
    version,
    setupSects,
    setupHeader: image.slice(HDR.SETUP_SECTS, Math.min(SETUP_HEADER_END, kernelOffset)),
    entry64: LAYOUT.HIGH_MEMORY + 0x200,
    has64BitEntry: (xloadflags & XLF_KERNEL_64) !== 0,
    initrdAddrMax: v.getUint32(HDR.INITRD_ADDR_MAX, true),
    initSize: version >= 0x20a ? v.getUint32(HDR.INIT_SIZE, true) : 0,
    kernelOffset,
  };
}

/** Loads the protected-mode kernel at 1 MiB; returns the end of the memory the kernel may use. */
export function loadBzImage(memory: GuestMemory, image: Uint8Array, bz: BzImage): number {
  const payload = image.subarray(bz.kernelOffset);
  const end = LAYOUT.HIGH_MEMORY + Math.max(payload.length, bz.initSize);
  if (!memory.contains(LAYOUT.HIGH_MEMORY, end - LAYOUT.HIGH_MEMORY)) {
    throw new TypevisorError('KERNEL_FORMAT', `the kernel needs ${end >> 20} MiB of RAM to unpack — give the VM more memory`);
  }
  memory.write(LAYOUT.HIGH_MEMORY, payload);
  return end;
}

/** The real-mode setup code's segment for the 16-bit boot protocol. */
export const REAL_MODE_SETUP_SEGMENT = 0x1000;

/** Loads the setup sectors at 0x10000 for the 16-bit entry (for kernels without a 64-bit entry). */
export function loadRealModeSetup(memory: GuestMemory, image: Uint8Array, bz: BzImage): number {
  const base = REAL_MODE_SETUP_SEGMENT * 16;
  memory.write(base, image.subarray(0, bz.kernelOffset));
  return base;
}
