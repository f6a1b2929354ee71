// The PCI root complex of bus 0: configuration mechanism #1 (ports 0xCF8/0xCFC, PCI Local Bus 3.0
// §3.2.2.3.2) and the ECAM window the MCFG table declares (PCIe 6.0 §7.2.2), both reaching the
// same per-function configuration spaces. Absent functions read as all ones; writes to them vanish.
import type { BusDevice } from '../bus-device.js';
import { PciConfigSpace } from './config-space.js';

export const PCI_SLOTS = 32;
/** Offsets of the mechanism #1 ports from 0xCF8. */
const ADDRESS = 0;
const DATA = 4;
const ENABLE = 0x80000000;

/** Shared state: the CONFIG_ADDRESS latch (one per machine, as on real hardware). */
export interface PciRootState {
  address: SharedArrayBuffer;
  /** Configuration space state per slot (function 0 only), as made by PciConfigSpace.create(). */
  functions: (SharedArrayBuffer | undefined)[];
}

export function createPciRootState(functions: (SharedArrayBuffer | undefined)[]): PciRootState {
  return { address: new SharedArrayBuffer(4), functions };
}

/** The host bridge at 00:00.0 (class 06/00/00). Red Hat's ID for a generic PCIe host bridge: no quirks in guests. */
export function hostBridgeConfig(): PciConfigSpace {
  return PciConfigSpace.create({ vendorId: 0x1b36, deviceId: 0x0008, classCode: [0x06, 0x00, 0x00] });
}

export class PciRootComplex {
  private readonly address: Int32Array;
  private readonly spaces: (PciConfigSpace | undefined)[];

  constructor(state: PciRootState) {
    this.address = new Int32Array(state.address);
    this.spaces = Array.from({ length: PCI_SLOTS }, (_, i) => {
      const s = state.functions[i];
      return s ? new PciConfigSpace(s) : undefined;
    });
  }

  /** Function 0 of `slot` on bus 0; everything else (other buses, functions) is absent. */
  private space(bus: number, slot: number, fn: number): PciConfigSpace | undefined {
    return bus === 0 && fn === 0 ? this.spaces[slot] : undefined;
  }

  private access(bus: number, slot: number, fn: number, reg: number, data: Uint8Array, write: boolean): void {
    const space = this.space(bus, slot, fn);
    if (!space) {
      if (!write) data.fill(0xff);
      return;
    }
    if (write) space.write(reg, data);
    else space.read(reg, data);
  }

  /** 0xCF8–0xCFF: the address latch (dword accesses only) and the data window. */
  readonly ports: BusDevice = {
    read: (offset, data) => {
      if (offset === ADDRESS && data.length === 4) {
        new DataView(data.buffer, data.byteOffset, 4).setUint32(0, Atomics.load(this.address, 0) >>> 0, true);
      } else if (offset >= DATA) {
        this.dataAccess(offset - DATA, data, false);
      } else {
        data.fill(0xff);
      }
    },
    write: (offset, data) => {
      if (offset === ADDRESS && data.length === 4) {
        // Bits 1:0 are reserved and read back as zero.
        Atomics.store(this.address, 0, new DataView(data.buffer, data.byteOffset, 4).getUint32(0, true) & ~3);
      } else if (offset >= DATA) {
        this.dataAccess(offset - DATA, data, true);
      }
    },
  };

  private dataAccess(byte: number, data: Uint8Array, write: boolean): void {
    const address = Atomics.load(this.address, 0) >>> 0;
    if ((address & ENABLE) === 0 || byte + data.length > 4) {
      if (!write) data.fill(0xff);
      return;
    }
    // Mechanism #1 reaches only the first 256 bytes of each function.
    this.access((address >>> 16) & 0xff, (address >>> 11) & 0x1f, (address >>> 8) & 7, (address & 0xfc) + byte, data, write);
  }

  /** The ECAM window for bus 0 (1 MiB): offset = device << 15 | function << 12 | register. */
  readonly ecam: BusDevice = {
    read: (offset, data) => this.access(offset >>> 20, (offset >>> 15) & 0x1f, (offset >>> 12) & 7, offset & 0xfff, data, false),
    write: (offset, data) => this.access(offset >>> 20, (offset >>> 15) & 0x1f, (offset >>> 12) & 7, offset & 0xfff, data, true),
  };
}
