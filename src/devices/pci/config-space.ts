// PCI configuration space of one function (PCI Local Bus 3.0 §6.1; PCIe 6.0 §7.5): 4 KiB in a
// SharedArrayBuffer, so that whichever vCPU thread exits on a config access serves it in place.
// A per-byte write mask says what the guest may change; everything else is read-only.

export const PCI_CONFIG_BYTES = 4096;

/** Header offsets (type 0). */
export const PCI_CFG = {
  VENDOR_ID: 0x00,
  DEVICE_ID: 0x02,
  COMMAND: 0x04,
  STATUS: 0x06,
  REVISION: 0x08,
  CLASS_PROG: 0x09,
  HEADER_TYPE: 0x0e,
  BAR0: 0x10,
  SUBSYSTEM_VENDOR_ID: 0x2c,
  SUBSYSTEM_ID: 0x2e,
  CAPABILITIES: 0x34,
  INTERRUPT_LINE: 0x3c,
  INTERRUPT_PIN: 0x3d,
} as const;

/** Command register bits the guest may set: I/O space, memory space, bus master, INTx disable. */
const COMMAND_WRITABLE = 0x0001 | 0x0002 | 0x0004 | 0x0400;

export interface PciIdentity {
  vendorId: number;
  deviceId: number;
  /** Base class, sub-class, programming interface. */
  classCode: [number, number, number];
  revision?: number;
  subsystemVendorId?: number;
  subsystemId?: number;
}

export class PciConfigSpace {
  /** The function's registers (shared memory: any vCPU thread may serve an access). */
  readonly bytes: Uint8Array;
  private readonly mask: Uint8Array;

  /** Lays out a type-0 header in fresh shared memory. */
  static create(id: PciIdentity): PciConfigSpace {
    const space = new PciConfigSpace(new SharedArrayBuffer(2 * PCI_CONFIG_BYTES));
    const v = new DataView(space.bytes.buffer, 0, PCI_CONFIG_BYTES);
    v.setUint16(PCI_CFG.VENDOR_ID, id.vendorId, true);
    v.setUint16(PCI_CFG.DEVICE_ID, id.deviceId, true);
    v.setUint8(PCI_CFG.REVISION, id.revision ?? 0);
    v.setUint8(PCI_CFG.CLASS_PROG, id.classCode[2]);
    v.setUint8(PCI_CFG.CLASS_PROG + 1, id.classCode[1]);
    v.setUint8(PCI_CFG.CLASS_PROG + 2, id.classCode[0]);
    v.setUint16(PCI_CFG.SUBSYSTEM_VENDOR_ID, id.subsystemVendorId ?? id.vendorId, true);
    v.setUint16(PCI_CFG.SUBSYSTEM_ID, id.subsystemId ?? 0, true);
    space.setMask(PCI_CFG.COMMAND, 2, COMMAND_WRITABLE);
    space.setMask(PCI_CFG.INTERRUPT_LINE, 1, 0xff);
    return space;
  }

  /** Wraps state made by create() (e.g. in another thread): bytes, then the write mask. */
  constructor(readonly state: SharedArrayBuffer) {
    this.bytes = new Uint8Array(state, 0, PCI_CONFIG_BYTES);
    this.mask = new Uint8Array(state, PCI_CONFIG_BYTES, PCI_CONFIG_BYTES);
  }

  private setMask(offset: number, width: number, value: number): void {
    for (let i = 0; i < width; i++) this.mask[offset + i] = (value >>> (8 * i)) & 0xff;
  }

  /** Reads `data.length` bytes at `offset`; beyond the space (or a misaligned access) reads as all ones. */
  read(offset: number, data: Uint8Array): void {
    if (!this.inRange(offset, data.length)) {
      data.fill(0xff);
      return;
    }
    data.set(this.bytes.subarray(offset, offset + data.length));
  }

  /** Writes what the mask allows; read-only bits keep their value. */
  write(offset: number, data: Uint8Array): void {
    if (!this.inRange(offset, data.length)) return;
    for (let i = 0; i < data.length; i++) {
      const m = this.mask[offset + i]!;
      this.bytes[offset + i] = (this.bytes[offset + i]! & ~m) | (data[i]! & m);
    }
  }

  /** Accesses of 1, 2 or 4 bytes, naturally aligned, inside the 4 KiB (PCI: no access crosses a dword). */
  private inRange(offset: number, len: number): boolean {
    return (len === 1 || len === 2 || len === 4) && offset >= 0 && offset + len <= PCI_CONFIG_BYTES && offset % len === 0;
  }
}
