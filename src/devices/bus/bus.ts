// An address bus (port I/O or MMIO): non-overlapping [base, base+length) ranges, each mapped to one BusDevice.
import { TypevisorError } from '../../base/errors.js';
import type { BusDevice } from '../bus-device.js';

interface Mapping {
  base: number;
  end: number; // exclusive
  device: BusDevice;
}

export class Bus {
  /** Sorted by base and never overlapping, so one binary search finds the owner on every exit. */
  private readonly mappings: Mapping[] = [];

  /** Maps [base, base+length) to `device`; throws INVALID_ARGUMENT on a bad or overlapping range. */
  insert(base: number, length: number, device: BusDevice): void {
    if (!Number.isSafeInteger(base) || !Number.isSafeInteger(length) || base < 0 || length <= 0 ||
        !Number.isSafeInteger(base + length)) {
      throw new TypevisorError('INVALID_ARGUMENT', `bad bus range 0x${base.toString(16)}+${length}`);
    }
    const end = base + length;
    const at = this.lowerBound(base);
    // Only the neighbours can overlap: the mapping before `at` (ends after base) or the one at `at` (starts before end).
    const before = this.mappings[at - 1];
    const after = this.mappings[at];
    const clash = before !== undefined && before.end > base ? before : after !== undefined && after.base < end ? after : undefined;
    if (clash) {
      throw new TypevisorError('INVALID_ARGUMENT',
        `bus range 0x${base.toString(16)}+${length} overlaps 0x${clash.base.toString(16)}-0x${(clash.end - 1).toString(16)}`);
    }
    this.mappings.splice(at, 0, { base, end, device });
  }

  /** Unmaps the range starting exactly at `base` (e.g. a PCI BAR the guest moves); returns its device. */
  remove(base: number): BusDevice | undefined {
    const at = this.lowerBound(base);
    const m = this.mappings[at];
    if (m?.base !== base) return undefined;
    this.mappings.splice(at, 1);
    return m.device;
  }

  /** Reads into `data`; an unmapped address reads as all ones (like an open PC bus). False when unmapped. */
  read(addr: number, data: Uint8Array): boolean {
    const m = this.find(addr);
    if (!m) {
      data.fill(0xff);
      return false;
    }
    m.device.read(addr - m.base, data);
    return true;
  }

  /** Writes `data`; writes to unmapped addresses are dropped. False when unmapped. */
  write(addr: number, data: Uint8Array): boolean {
    const m = this.find(addr);
    if (!m) return false;
    m.device.write(addr - m.base, data);
    return true;
  }

  /** Index of the first mapping whose base is >= `base`. */
  private lowerBound(base: number): number {
    const ms = this.mappings;
    let lo = 0;
    let hi = ms.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (ms[mid]!.base < base) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  /** The mapping containing `addr`, or undefined. */
  private find(addr: number): Mapping | undefined {
    const ms = this.mappings;
    let lo = 0;
    let hi = ms.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const m = ms[mid]!;
      if (addr < m.base) hi = mid - 1;
      else if (addr >= m.end) lo = mid + 1;
      else return m;
    }
    return undefined;
  }
}
