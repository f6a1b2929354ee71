// An address bus (port I/O or MMIO): non-overlapping ranges, each mapped to one BusDevice.
import { TypevisorError } from '../../base/errors.js';
import type { BusDevice } from '../bus-device.js';

interface Mapping {
  base: number;
  end: number; // exclusive
  device: BusDevice;
}

export class Bus {
  /** Sorted by base; looked up by binary search on every exit. */
  private readonly mappings: Mapping[] = [];

  insert(base: number, length: number, device: BusDevice): void {
    if (!Number.isSafeInteger(base) || !Number.isSafeInteger(length) || base < 0 || length <= 0) {
      throw new TypevisorError('INVALID_ARGUMENT', `bad bus range 0x${base.toString(16)}+${length}`);
    }
    const end = base + length;
    const clash = this.mappings.find((m) => base < m.end && m.base < end);
    if (clash) {
      throw new TypevisorError('INVALID_ARGUMENT',
        `bus range 0x${base.toString(16)}+${length} overlaps 0x${clash.base.toString(16)}-0x${(clash.end - 1).toString(16)}`);
    }
    const at = this.mappings.findIndex((m) => m.base > base);
    this.mappings.splice(at < 0 ? this.mappings.length : at, 0, { base, end, device });
  }

  /** The mapping containing `addr`, or undefined. */
  private find(addr: number): Mapping | undefined {
    const ms = this.mappings;
    let lo = 0;
    let hi = ms.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const m = ms[mid]!;
      if (addr < m.base) hi = mid - 1;
      else if (addr >= m.end) lo = mid + 1;
      else return m;
    }
    return undefined;
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
}
