// ELF64 vmlinux parsing and loading (System V gABI, x86-64 psABI) and the PVH entry note (Xen's elfnote.h XEN_ELFNOTE_PHYS32_ENTRY).
import { TypevisorError } from '../../base/errors.js';
import type { GuestMemory } from '../../memory/guest-memory.js';

const EHDR_SIZE = 64;
const PHDR_SIZE = 56;
const ET_EXEC = 2;
const EM_X86_64 = 62;
const PT_LOAD = 1;
const PT_NOTE = 4;
/** Xen's public/elfnote.h: the 32-bit physical entry of a PVH kernel. */
export const XEN_ELFNOTE_PHYS32_ENTRY = 18;

export interface ElfSegment {
  fileOffset: number;
  fileSize: number;
  paddr: number;
  vaddr: bigint;
  memSize: number;
}

export interface ElfKernel {
  /** Physical address of e_entry (startup_64, entered through the 64-bit Linux boot protocol). */
  entry: number;
  /** 32-bit physical PVH entry point, when the kernel has one. */
  pvhEntry: number | undefined;
  /** The PT_LOAD segments with a non-zero size. */
  segments: ElfSegment[];
}

function fail(path: string, why: string): never {
  throw new TypevisorError('KERNEL_FORMAT', `${path} is not a usable x86-64 ELF kernel: ${why}`);
}

/**
 * Parses and bounds-checks an ELF64 x86-64 kernel image; no guest memory is touched. Every offset
 * and size read from the file is checked before use, so a corrupt or hostile file fails with
 * KERNEL_FORMAT rather than reading past the buffer.
 */
export function parseElfKernel(image: Uint8Array, path = 'kernel'): ElfKernel {
  if (image.length < EHDR_SIZE) fail(path, 'too short for an ELF header');
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (v.getUint32(0, false) !== 0x7f454c46) fail(path, 'no ELF magic');
  if (image[4] !== 2 || image[5] !== 1) fail(path, 'not a little-endian ELF64 file (a 32-bit kernel?)');
  if (v.getUint16(16, true) !== ET_EXEC) fail(path, `ELF type ${v.getUint16(16, true)} is not an executable`);
  if (v.getUint16(18, true) !== EM_X86_64) fail(path, `machine ${v.getUint16(18, true)} is not x86-64`);
  const entryV = v.getBigUint64(24, true);
  const phoff = v.getBigUint64(32, true);
  const phentsize = v.getUint16(54, true);
  const phnum = v.getUint16(56, true);
  if (phentsize < PHDR_SIZE || phnum === 0 || phoff + BigInt(phnum * phentsize) > BigInt(image.length)) {
    fail(path, 'program headers out of range');
  }

  const segments: ElfSegment[] = [];
  let pvhEntry: number | undefined;
  for (let i = 0; i < phnum; i++) {
    const o = Number(phoff) + i * phentsize;
    const type = v.getUint32(o, true);
    if (type !== PT_LOAD && type !== PT_NOTE) continue;
    const offset = v.getBigUint64(o + 8, true);
    const vaddr = v.getBigUint64(o + 16, true);
    const paddr = v.getBigUint64(o + 24, true);
    const filesz = v.getBigUint64(o + 32, true);
    const memsz = v.getBigUint64(o + 40, true);
    if (offset + filesz > BigInt(image.length)) fail(path, `segment ${i} lies outside the file`);
    if (type === PT_NOTE) {
      pvhEntry ??= findPvhNote(v, Number(offset), Number(filesz));
      continue;
    }
    if (memsz === 0n) continue;
    if (filesz > memsz) fail(path, `segment ${i} has more file bytes than memory bytes`);
    if (paddr + memsz > BigInt(Number.MAX_SAFE_INTEGER)) fail(path, `segment ${i} lies beyond any guest address`);
    segments.push({ fileOffset: Number(offset), fileSize: Number(filesz), paddr: Number(paddr), vaddr, memSize: Number(memsz) });
  }
  if (segments.length === 0) fail(path, 'no loadable segments');
  return { entry: physicalEntry(entryV, segments, path), pvhEntry, segments };
}

/**
 * Linux links x86-64 vmlinux with ENTRY(phys_startup_64), so e_entry is already physical; other
 * linkers put a virtual address there, which we translate through the segment that holds it.
 */
function physicalEntry(entry: bigint, segments: readonly ElfSegment[], path: string): number {
  if (segments.some((s) => entry >= BigInt(s.paddr) && entry < BigInt(s.paddr + s.memSize))) return Number(entry);
  const holder = segments.find((s) => entry >= s.vaddr && entry < s.vaddr + BigInt(s.memSize));
  if (holder === undefined) fail(path, `entry point 0x${entry.toString(16)} is outside every loadable segment`);
  return holder.paddr + Number(entry - holder.vaddr);
}

/** Walks the notes in [off, off+len) for Xen's PHYS32_ENTRY (the PVH entry point). */
function findPvhNote(v: DataView, off: number, len: number): number | undefined {
  const end = off + len;
  let p = off;
  while (p + 12 <= end) {
    const namesz = v.getUint32(p, true);
    const descsz = v.getUint32(p + 4, true);
    const type = v.getUint32(p + 8, true);
    const nameOff = p + 12;
    const descOff = nameOff + align4(namesz);
    const next = descOff + align4(descsz);
    if (next > end) return undefined;
    // "Xen\0": namesz counts the NUL.
    const isXen = namesz === 4 && v.getUint32(nameOff, false) === 0x58656e00;
    if (isXen && type === XEN_ELFNOTE_PHYS32_ENTRY) {
      // Linux emits the value with _ASM_PTR (8 bytes on x86-64); older notes have 4. Either way it is a 32-bit address.
      if (descsz === 4) return v.getUint32(descOff, true);
      if (descsz === 8 && v.getUint32(descOff + 4, true) === 0) return v.getUint32(descOff, true);
    }
    p = next;
  }
  return undefined;
}

const align4 = (n: number): number => Math.ceil(n / 4) * 4;

/** Copies the PT_LOAD segments to their physical addresses, zeroing up to p_memsz; returns the end of the highest one. */
export function loadElfKernel(memory: GuestMemory, image: Uint8Array, elf: ElfKernel): number {
  let end = 0;
  for (const s of elf.segments) {
    if (!memory.contains(s.paddr, s.memSize)) {
      throw new TypevisorError('KERNEL_FORMAT',
        `the kernel wants 0x${s.paddr.toString(16)}+0x${s.memSize.toString(16)} bytes, outside guest RAM — give the VM more memory`);
    }
    memory.write(s.paddr, image.subarray(s.fileOffset, s.fileOffset + s.fileSize));
    memory.fill(s.paddr + s.fileSize, s.memSize - s.fileSize, 0);
    end = Math.max(end, s.paddr + s.memSize);
  }
  return end;
}
