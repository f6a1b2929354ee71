// bzImage parsing and loading per the Linux x86 boot protocol (Documentation/arch/x86/boot.rst), version ≥ 2.06.
import { TypevisorError } from '../../base/errors.js';
import type { GuestMemory } from '../../memory/guest-memory.js';
import { LAYOUT } from './layout.js';

/** Offsets of the setup header fields in the image (and in boot_params, where the header is copied 1:1). */
export const HDR = {
  SETUP_SECTS: 0x1f1,
  VID_MODE: 0x1fa,
  BOOT_FLAG: 0x1fe,
  /** A 2-byte short jump; its displacement byte says where the header ends. */
  JUMP: 0x200,
  HEADER: 0x202,
  VERSION: 0x206,
  TYPE_OF_LOADER: 0x210,
  LOADFLAGS: 0x211,
  RAMDISK_IMAGE: 0x218,
  RAMDISK_SIZE: 0x21c,
  HEAP_END_PTR: 0x224,
  CMD_LINE_PTR: 0x228,
  INITRD_ADDR_MAX: 0x22c,
  KERNEL_ALIGNMENT: 0x230,
  RELOCATABLE_KERNEL: 0x234,
  XLOADFLAGS: 0x236,
  CMDLINE_SIZE: 0x238,
  HARDWARE_SUBARCH: 0x23c,
  PAYLOAD_OFFSET: 0x248,
  PAYLOAD_LENGTH: 0x24c,
  PREF_ADDRESS: 0x258,
  INIT_SIZE: 0x260,
} as const;

/** "HdrS", little-endian. */
export const HDRS_MAGIC = 0x53726448;
/** loadflags: the protected-mode code is loaded at 1 MiB (a bzImage, not a zImage). */
export const LOADED_HIGH = 0x01;
/** loadflags: heap_end_ptr is valid. */
export const CAN_USE_HEAP = 0x80;
/** xloadflags: the kernel has the 64-bit entry point at its load address + 0x200. */
export const XLF_KERNEL_64 = 0x1;
/**
 * struct boot_params has the header at 0x1f1 and the next field (edd_mbr_sig_buffer) at 0x290,
 * so no header, however new, may be copied past this.
 */
export const SETUP_HEADER_LIMIT = 0x290;

export interface BzImage {
  version: number;
  setupSects: number;
  /** Bytes 0x1f1..end of the header (0x202 + the jump's displacement), for boot_params.hdr. */
  setupHeader: Uint8Array;
  loadflags: number;
  /** xloadflags (protocol 2.12+; 0 before). */
  xloadflags: number;
  /** The 64-bit entry point (protected-mode kernel + 0x200), valid when `has64BitEntry`. */
  entry64: number;
  has64BitEntry: boolean;
  /** The highest address the initrd may occupy (its last byte). */
  initrdAddrMax: number;
  /** Alignment the kernel relocates itself to (protocol 2.05+). */
  kernelAlignment: number;
  relocatable: boolean;
  /** Longest command line the kernel accepts, without its NUL. */
  cmdlineSize: number;
  /** Where the kernel prefers to run (protocol 2.10+; 1 MiB before). */
  prefAddress: number;
  /** Memory the kernel needs from its runtime start before it reads the memory map (2.10+; 0 before). */
  initSize: number;
  /** The compressed payload, relative to the protected-mode code (2.08+; 0 before). */
  payloadOffset: number;
  payloadLength: number;
  /** Offset in the file of the protected-mode kernel: (setup_sects + 1) × 512. */
  kernelOffset: number;
}

/** Parses and checks a bzImage's setup header; throws KERNEL_FORMAT for anything Typevisor cannot boot. */
export function parseBzImage(image: Uint8Array, path = 'kernel'): BzImage {
  const bad = (why: string): never => {
    throw new TypevisorError('KERNEL_FORMAT', `${path} is neither an ELF vmlinux nor a bzImage: ${why}`);
  };
  if (image.length < 0x400) bad('too short');
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (v.getUint32(HDR.HEADER, true) !== HDRS_MAGIC) bad('no "HdrS" boot header at 0x202');
  const version = v.getUint16(HDR.VERSION, true);
  if (version < 0x206) {
    throw new TypevisorError('KERNEL_FORMAT',
      `${path} uses boot protocol ${version >> 8}.${(version & 0xff).toString().padStart(2, '0')}; Typevisor needs 2.06 or later (Linux 2.6.22+)`);
  }
  const loadflags = image[HDR.LOADFLAGS]!;
  if ((loadflags & LOADED_HIGH) === 0) bad('it is a zImage (loaded at 0x10000), which Typevisor does not boot');
  // boot.rst: "if setup_sects is 0, the real value is 4".
  const setupSects = image[HDR.SETUP_SECTS] || 4;
  const kernelOffset = (setupSects + 1) * 512;
  if (kernelOffset > image.length) bad('the setup code runs past the end of the file');
  const headerEnd = Math.min(0x202 + image[HDR.JUMP + 1]!, SETUP_HEADER_LIMIT, kernelOffset);
  const xloadflags = version >= 0x20c ? v.getUint16(HDR.XLOADFLAGS, true) : 0;
  const kernelAlignment = v.getUint32(HDR.KERNEL_ALIGNMENT, true);
  const relocatable = image[HDR.RELOCATABLE_KERNEL] !== 0;
  if (relocatable && (kernelAlignment === 0 || (kernelAlignment & (kernelAlignment - 1)) !== 0)) {
    bad(`kernel_alignment 0x${kernelAlignment.toString(16)} is not a power of two`);
  }
  const pref = version >= 0x20a ? v.getBigUint64(HDR.PREF_ADDRESS, true) : BigInt(LAYOUT.HIGH_MEMORY);
  if (pref >= 1n << 32n) bad(`pref_address 0x${pref.toString(16)} is above 4 GiB`);
  const payloadOffset = version >= 0x208 ? v.getUint32(HDR.PAYLOAD_OFFSET, true) : 0;
  const payloadLength = version >= 0x208 ? v.getUint32(HDR.PAYLOAD_LENGTH, true) : 0;
  if (kernelOffset + payloadOffset + payloadLength > image.length) bad('the compressed payload runs past the end of the file');
  return {
    version,
    setupSects,
    setupHeader: image.slice(HDR.SETUP_SECTS, headerEnd),
    loadflags,
    xloadflags,
    entry64: LAYOUT.HIGH_MEMORY + 0x200,
    has64BitEntry: (xloadflags & XLF_KERNEL_64) !== 0,
    initrdAddrMax: v.getUint32(HDR.INITRD_ADDR_MAX, true),
    kernelAlignment,
    relocatable,
    cmdlineSize: v.getUint32(HDR.CMDLINE_SIZE, true),
    prefAddress: Number(pref),
    initSize: version >= 0x20a ? v.getUint32(HDR.INIT_SIZE, true) : 0,
    payloadOffset,
    payloadLength,
    kernelOffset,
  };
}

/**
 * Where the kernel will run once loaded at 1 MiB (boot.rst, "init_size"): a relocatable kernel
 * moves itself up to pref_address if loaded below it, aligned to kernel_alignment; a fixed one
 * runs at pref_address.
 */
export function runtimeStart(bz: BzImage): number {
  if (!bz.relocatable) return bz.prefAddress;
  const load = Math.max(LAYOUT.HIGH_MEMORY, bz.prefAddress);
  return Math.ceil(load / bz.kernelAlignment) * bz.kernelAlignment;
}

/**
 * The first byte past all the memory the kernel uses before it reads the memory map: the loaded
 * image at 1 MiB and the init_size bytes from its runtime start (the initrd must lie above it).
 */
export function bzImageEnd(image: Uint8Array, bz: BzImage): number {
  return Math.max(LAYOUT.HIGH_MEMORY + image.length - bz.kernelOffset, runtimeStart(bz) + bz.initSize);
}

/** Loads the protected-mode kernel at 1 MiB; returns the end of the memory the kernel may use (bzImageEnd). */
export function loadBzImage(memory: GuestMemory, image: Uint8Array, bz: BzImage): number {
  const end = bzImageEnd(image, bz);
  if (!memory.contains(LAYOUT.HIGH_MEMORY, end - LAYOUT.HIGH_MEMORY)) {
    throw new TypevisorError('KERNEL_FORMAT',
      `the kernel needs ${Math.ceil(end / 2 ** 20)} MiB of RAM to unpack itself — give the VM more memory`);
  }
  memory.write(LAYOUT.HIGH_MEMORY, image.subarray(bz.kernelOffset));
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
