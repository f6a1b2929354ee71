// ELF64 vmlinux loading (System V gABI) and the PVH entry note (Xen's XEN_ELFNOTE_PHYS32_ENTRY).
import { TypevisorError } from '../../base/errors.js';
import type { GuestMemory } from '../../memory/guest-memory.js';

const PT_LOAD = 1;
const PT_NOTE = 4;
const EM_X86_64 = 62;
const XEN_ELFNOTE_PHYS32_ENTRY = 18;

export interface ElfSegment {
  fileOffset: number;
  fileSize: number;
  paddr: number;
  vaddr: bigint;
  memSize: number;
}

export interface ElfKernel {
  /** Physical address of e_entry (the 64-bit startup code). */
  entry: number;
  /** 32-bit physical PVH entry point, when the kernel has one. */
  pvhEntry: number | undefined;
  segments: ElfSegment[];
}

function fail(path: string, why: string): never {
  throw new TypevisorError('KERNEL_FORMAT', `${path} is not a usable x86-64 ELF kernel: ${why}`);
}

/** Parses and bounds-checks an ELF64 x86-64 kernel image; no guest memory is touched. */
export function parseElfKernel(image: Uint8Array, path = 'kernel'): ElfKernel {
  const v = new DataView(image.buffer, image.byteOffset, image.byteLength);
  if (image.length < 64) fail(path, 'too short for an ELF header');
  if (v.getUint32(0, false) !== 0x7f454c46) fail(path, 'no ELF magic');
  if (image[4] !== 2 || image[5] !== 1) fail(path, 'not a little-endian ELF64 file');
  if (v.getUint16(18, true) !== EM_X86_64) fail(path, `machine ${v.getUint16(18, true)} is not x86-64`);
  const entryV = v.getBigUint64(24, true);
  const phoff = Number(v.getBigUint64(32, true));
  const phentsize = v.getUint16(54, true);
  const phnum = v.getUint16(56, true);
  if (phentsize < 56 || phnum === 0 || phoff + phnum * phentsize > image.length) fail(path, 'program headers out of range');

  const segments: ElfSegment[] = [];
  let pvhEntry: number | undefined;
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * phentsize;
    const type = v.getUint32(o, true);
    const fileOffset = Number(v.getBigUint64(o + 8, true));
    const vaddr = v.getBigUint64(o + 16, true);
    const paddr = Number(v.getBigUint64(o + 24, true));
    const fileSize = Number(v.getBigUint64(o + 32, true));
    const memSize = Number(v.getBigUint64(o + 40, true));
    if (fileOffset + fileSize > image.length || fileSize > memSize) fail(path, `segment ${i} lies outside the file`);
    if (type === PT_LOAD && memSize > 0) segments.push({ fileOffset, fileSize, paddr, vaddr, memSize });
    if (type === PT_NOTE) pvhEntry ??= findPvhNote(v, fileOffset, fileSize);
  }
  if (segments.length === 0) fail(path, 'no loadable segments');
  const holder = segments.find((s) => entryV >= s.vaddr && entryV < s.vaddr + BigInt(s.memSize));
  const entry = holder ? holder.paddr + Number(entryV - holder.vaddr) : Number(BigInt.asUintN(32, entryV));
  return { entry, pvhEntry, segments };
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
    if (next > end || next <= p) return undefined;
    const name = new TextDecoder().decode(new Uint8Array(v.buffer, v.byteOffset + nameOff, Math.max(0, namesz - 1)));
    if (name === 'Xen' && type === XEN_ELFNOTE_PHYS32_ENTRY && (descsz === 4 || descsz === 8)) {
      return v.getUint32(descOff, true);
    }
    p = next;
  }
  return undefined;
}

const align4 = (n: number): number => (n + 3) & ~3;

/** Copies the PT_LOAD segments to their physical addresses; returns the end of the highest one. */
export function loadElfKernel(memory: GuestMemory, image: Uint8Array, elf: ElfKernel): number {
  let end = 0;
  for (const s of elf.segments) {
    if (!memory.contains(s.paddr, s.memSize)) {
      throw new TypevisorError('KERNEL_FORMAT',
        `the kernel wants 0x${s.paddr.toString(16)}+${s.memSize} bytes, outside guest RAM — give the VM more memory`);
    }
    memory.write(s.paddr, image.subarray(s.fileOffset, s.fileOffset + s.fileSize));
    memory.fill(s.paddr + s.fileSize, s.memSize - s.fileSize, 0);
    end = Math.max(end, s.paddr + s.memSize);
  }
  return end;
}
