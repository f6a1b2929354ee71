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

/** Status register: the function has a capabilities list. */
const STATUS_CAP_LIST = 0x0010;
/** Where the first capability goes (after the type-0 header). */
const FIRST_CAPABILITY = 0x40;

export type BarKind = 'io' | 'mem32' | 'mem64';

export interface Bar {
  index: number;
  kind: BarKind;
  /** A power of 2: at least 16 bytes for memory, 4 for I/O. */
  size: number;
  /** Where the BAR points when the guest has not moved it. */
  address: number;
  prefetchable?: boolean;
}

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
  /** The function's registers, in shared memory so that every vCPU thread can serve an access. */
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

  private set32(offset: number, value: number): void {
    new DataView(this.bytes.buffer, 0, PCI_CONFIG_BYTES).setUint32(offset, value >>> 0, true);
  }

  private get32(offset: number): number {
    return new DataView(this.bytes.buffer, 0, PCI_CONFIG_BYTES).getUint32(offset, true);
  }

  /**
   * Declares a BAR (PCI 3.0 §6.2.5.1): the address bits below its size are read-only zero, so the
   * guest's write of all ones reads back as the size mask (how BARs are sized). A 64-bit BAR uses
   * two registers.
   */
  addBar(bar: Bar): void {
    const { index, kind, size, address } = bar;
    const min = kind === 'io' ? 4 : 16;
    if (!Number.isInteger(size) || size < min || (size & (size - 1)) !== 0 || (kind !== 'mem64' && size > 2 ** 31)) throw new Error(`BAR ${index}: bad size ${size}`);
    if (index < 0 || index > (kind === 'mem64' ? 4 : 5)) throw new Error(`BAR index ${index} out of range`);
    if (address % size !== 0) throw new Error(`BAR ${index}: address 0x${address.toString(16)} is not aligned to its size`);
    const offset = PCI_CFG.BAR0 + 4 * index;
    const flags = kind === 'io' ? 0x1 : (kind === 'mem64' ? 0x4 : 0) | (bar.prefetchable ? 0x8 : 0);
    const lowMask = size >= 2 ** 32 ? 0 : (~(size - 1) >>> 0) & (kind === 'io' ? ~0x3 >>> 0 : ~0xf >>> 0);
    this.set32(offset, ((address % 2 ** 32) | flags) >>> 0);
    this.setMask(offset, 4, lowMask);
    if (kind === 'mem64') {
      this.set32(offset + 4, Math.floor(address / 2 ** 32));
      this.setMask(offset + 4, 4, size > 2 ** 32 ? (~(Math.floor(size / 2 ** 32) - 1) >>> 0) : 0xffffffff);
    }
  }

  /** Where BAR `index` points now (as the guest last programmed it), without its flag bits. */
  barAddress(index: number): number {
    const offset = PCI_CFG.BAR0 + 4 * index;
    const low = this.get32(offset);
    if (low & 1) return low & ~0x3;
    const base = (low & ~0xf) >>> 0;
    return (low & 0x6) === 0x4 ? base + this.get32(offset + 4) * 2 ** 32 : base;
  }

  private nextCapability = FIRST_CAPABILITY;

  /**
   * Appends a capability (PCI 3.0 §6.7): `body` starts after the ID and next-pointer bytes;
   * `writable` gives per-byte write masks for the body. Returns the capability's offset.
   */
  addCapability(id: number, body: Uint8Array, writable?: Uint8Array): number {
    const at = this.nextCapability;
    const length = (2 + body.length + 3) & ~3;
    if (at + length > 0x100) throw new Error('capabilities overflow the 256-byte PCI configuration space');
    this.bytes[at] = id;
    this.bytes[at + 1] = 0;
    this.bytes.set(body, at + 2);
    if (writable) this.mask.set(writable.subarray(0, body.length), at + 2);
    // Link it: from the header's pointer for the first, from the previous one otherwise.
    if (at === FIRST_CAPABILITY) {
      this.bytes[PCI_CFG.CAPABILITIES] = at;
      this.bytes[PCI_CFG.STATUS] = this.bytes[PCI_CFG.STATUS]! | STATUS_CAP_LIST;
    } else {
      let p = this.bytes[PCI_CFG.CAPABILITIES]!;
      while (this.bytes[p + 1] !== 0) p = this.bytes[p + 1]!;
      this.bytes[p + 1] = at;
    }
    this.nextCapability = at + length;
    return at;
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
