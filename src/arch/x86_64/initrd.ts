// Initrd placement per the Linux boot protocol (boot.rst, "initrd_addr_max"): as high as allowed, page-aligned, clear of the kernel.
import { TypevisorError } from '../../base/errors.js';
import type { GuestMemory } from '../../memory/guest-memory.js';

export interface InitrdPlacement {
  /** First byte past the kernel's memory (the initrd must not overlap it). */
  kernelEnd: number;
  /** initrd_addr_max from the kernel's header: the last byte the initrd may occupy. */
  maxAddr: number;
}

const MiB = 2 ** 20;
const mib = (n: number): string => `${(n / MiB).toFixed(1)} MiB`;

/**
 * The highest 4 KiB-aligned address where `size` bytes fit below both `ramEnd` and maxAddr + 1
 * and above the kernel. High, because the kernel's early allocations grow up from its end.
 */
export function initrdAddress(size: number, where: InitrdPlacement & { ramEnd: number }): number {
  if (size === 0) throw new TypevisorError('INVALID_ARGUMENT', 'the initrd is empty — pass a cpio archive or leave --initrd out');
  const top = Math.min(where.ramEnd, where.maxAddr + 1);
  const gpa = Math.floor((top - size) / 4096) * 4096;
  const floor = Math.ceil(where.kernelEnd / 4096) * 4096;
  if (gpa < floor) {
    const remedy = top === where.ramEnd
      ? `give the VM at least ${Math.ceil((floor + size) / MiB)} MiB or use a smaller initrd`
      : 'the kernel takes initrds only below that (initrd_addr_max); use a smaller initrd';
    throw new TypevisorError('INITRD_TOO_LARGE',
      `the initrd (${mib(size)}) does not fit between the kernel's end (${mib(floor)}) and the top of ` +
      `usable low memory (${mib(top)}) — ${remedy}`);
  }
  return gpa;
}

/** Copies the initrd to the highest spot in the first RAM region (below the PCI hole) that the kernel accepts. */
export function placeInitrd(memory: GuestMemory, initrd: Uint8Array, where: InitrdPlacement): { gpa: number; size: number } {
  const low = memory.regions[0]!;
  const gpa = initrdAddress(initrd.length, { ...where, ramEnd: low.gpa + low.size });
  memory.write(gpa, initrd);
  return { gpa, size: initrd.length };
}
