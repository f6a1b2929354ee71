// Guest physical memory: bounds-checked access to the RAM regions of one VM, over a host mapping.
import { TypevisorError } from '../base/errors.js';

/** One contiguous range of guest RAM, backed at `hostOffset` bytes into the backing buffer. */
export interface MemoryRegion {
  readonly gpa: number;
  readonly size: number;
  readonly hostOffset: number;
}

/**
 * Guest RAM as seen by one thread. The backing buffer is either a host mapping (one per worker,
 * all views of the same memfd pages) or a plain ArrayBuffer in unit tests. Every access is
 * checked to lie inside one region: guest-supplied addresses never reach the buffer unchecked.
 */
export class GuestMemory {
  readonly regions: readonly MemoryRegion[];
  readonly bytes: Uint8Array;
  private readonly view: DataView;

  constructor(backing: ArrayBuffer | SharedArrayBuffer | Uint8Array, regions: readonly MemoryRegion[]) {
    this.bytes = backing instanceof Uint8Array ? backing : new Uint8Array(backing);
    this.view = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
    for (const r of regions) {
      if (r.hostOffset + r.size > this.bytes.byteLength) {
        throw new TypevisorError('INTERNAL', `memory region at 0x${r.gpa.toString(16)} exceeds its backing`);
      }
    }
    this.regions = [...regions].sort((a, b) => a.gpa - b.gpa);
  }

  /** A fresh zeroed memory with one region at GPA 0 (for tests and tiny guests). */
  static anonymous(size: number): GuestMemory {
    return new GuestMemory(new ArrayBuffer(size), [{ gpa: 0, size, hostOffset: 0 }]);
  }

  /** Total bytes of RAM. */
  get size(): number {
    return this.regions.reduce((n, r) => n + r.size, 0);
  }

  /** Host offset of [gpa, gpa+len) if it lies entirely inside one region, else -1. */
  offsetOf(gpa: number, len: number): number {
    if (!Number.isSafeInteger(gpa) || !Number.isSafeInteger(len) || gpa < 0 || len < 0) return -1;
    for (const r of this.regions) {
      if (gpa >= r.gpa && gpa + len <= r.gpa + r.size) return r.hostOffset + (gpa - r.gpa);
    }
    return -1;
  }

  /** True when [gpa, gpa+len) is guest RAM. */
  contains(gpa: number, len: number): boolean {
    return this.offsetOf(gpa, len) >= 0;
  }

  private checked(gpa: number, len: number): number {
    const off = this.offsetOf(gpa, len);
    if (off < 0) {
      throw new TypevisorError(
        'GUEST_MEMORY_FAULT',
        `guest memory access out of range: 0x${gpa.toString(16)}+${len}`,
      );
    }
    return off;
  }

  /** A live view (no copy) of [gpa, gpa+len). */
  slice(gpa: number, len: number): Uint8Array {
    const off = this.checked(gpa, len);
    return this.bytes.subarray(off, off + len);
  }

  /** A copy of [gpa, gpa+len). */
  read(gpa: number, len: number): Uint8Array {
    return this.slice(gpa, len).slice();
  }

  write(gpa: number, data: Uint8Array): void {
    this.bytes.set(data, this.checked(gpa, data.length));
  }

  fill(gpa: number, len: number, value = 0): void {
    const off = this.checked(gpa, len);
    this.bytes.fill(value, off, off + len);
  }

  getU8(gpa: number): number { return this.view.getUint8(this.checked(gpa, 1)); }
  getU16(gpa: number): number { return this.view.getUint16(this.checked(gpa, 2), true); }
  getU32(gpa: number): number { return this.view.getUint32(this.checked(gpa, 4), true); }
  getU64(gpa: number): bigint { return this.view.getBigUint64(this.checked(gpa, 8), true); }
  setU8(gpa: number, v: number): void { this.view.setUint8(this.checked(gpa, 1), v); }
  setU16(gpa: number, v: number): void { this.view.setUint16(this.checked(gpa, 2), v, true); }
  setU32(gpa: number, v: number): void { this.view.setUint32(this.checked(gpa, 4), v, true); }
  setU64(gpa: number, v: bigint): void { this.view.setBigUint64(this.checked(gpa, 8), v, true); }
}
