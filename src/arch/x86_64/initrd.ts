// Initrd placement per the Linux boot protocol: as high as allowed, page-aligned, clear of the kernel.
import { TypevisorError } from '../../base/errors.js';
import type { GuestMemory } from '../../memory/guest-memory.js';

export interface InitrdPlacement {
  /** First byte past the kernel's memory (the initrd must not overlap it). */
  kernelEnd: number;
  /** initrd_addr_max from the kernel's header (the last byte the initrd may occupy). */
  maxAddr: number;
}

/** Copies the initrd to the highest 4 KiB-aligned spot in low RAM that the kernel accepts. */
export function placeInitrd(memory: GuestMemory, initrd: Uint8Array, where: InitrdPlacement): { gpa: number; size: number } {
  const low = memory.regions[0]!;
  const top = Math.min(low.gpa + low.size, where.maxAddr + 1);
  const gpa = Math.floor((top - initrd.length) / 4096) * 4096;
  const floor = Math.ceil(where.kernelEnd / 4096) * 4096;
  if (initrd.length === 0 || gpa < floor) {
    throw new TypevisorError('INITRD_TOO_LARGE',
      `the initrd (${(initrd.length / 2 ** 20).toFixed(1)} MiB) does not fit between the kernel's end ` +
      `(${(floor / 2 ** 20).toFixed(1)} MiB) and the top of usable low memory (${(top / 2 ** 20).toFixed(1)} MiB) — ` +
      'give the VM more memory or use a smaller initrd');
  }
  memory.write(gpa, initrd);
  return { gpa, size: initrd.length };
}
