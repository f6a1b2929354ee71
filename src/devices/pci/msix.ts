// MSI-X (PCI 3.0 §6.8.2): the capability in configuration space, and the vector table and pending
// bit array that live in a memory BAR. Table and PBA are in a SharedArrayBuffer, so any vCPU thread
// serves the guest's accesses and the I/O side reads the vectors it must signal.
import type { BusDevice } from '../bus-device.js';
import type { PciConfigSpace } from './config-space.js';

export const PCI_CAP_ID_MSIX = 0x11;
const ENTRY_BYTES = 16;
const CONTROL_ENABLE = 0x8000;
const CONTROL_FUNCTION_MASK = 0x4000;
const VECTOR_MASKED = 1;
export const MAX_MSIX_VECTORS = 2048;

export interface MsixMessage {
  address: bigint;
  data: number;
  masked: boolean;
}

export class MsixTable {
  readonly state: SharedArrayBuffer;
  private readonly table: DataView;
  private readonly pba: DataView;

  /** `vectors` entries; every vector starts masked, as the spec requires after reset. */
  static create(vectors: number): MsixTable {
    if (!Number.isInteger(vectors) || vectors < 1 || vectors > MAX_MSIX_VECTORS) throw new Error(`MSI-X vector count ${vectors}`);
    const t = new MsixTable(new SharedArrayBuffer(vectors * ENTRY_BYTES + MsixTable.pbaBytes(vectors)), vectors);
    for (let i = 0; i < vectors; i++) t.table.setUint32(i * ENTRY_BYTES + 12, VECTOR_MASKED, true);
    return t;
  }

  static pbaBytes(vectors: number): number {
    return Math.ceil(vectors / 64) * 8;
  }

  constructor(state: SharedArrayBuffer, readonly vectors: number) {
    this.state = state;
    this.table = new DataView(state, 0, vectors * ENTRY_BYTES);
    this.pba = new DataView(state, vectors * ENTRY_BYTES, MsixTable.pbaBytes(vectors));
  }

  get tableBytes(): number {
    return this.vectors * ENTRY_BYTES;
  }

  message(vector: number): MsixMessage {
    const at = vector * ENTRY_BYTES;
    return {
      address: BigInt(this.table.getUint32(at, true)) | (BigInt(this.table.getUint32(at + 4, true)) << 32n),
      data: this.table.getUint32(at + 8, true),
      masked: (this.table.getUint32(at + 12, true) & VECTOR_MASKED) !== 0,
    };
  }

  setPending(vector: number, pending: boolean): void {
    const byte = vector >> 3;
    const bit = 1 << (vector & 7);
    const v = this.pba.getUint8(byte);
    this.pba.setUint8(byte, pending ? v | bit : v & ~bit);
  }

  isPending(vector: number): boolean {
    return (this.pba.getUint8(vector >> 3) & (1 << (vector & 7))) !== 0;
  }

  /**
   * The table's MMIO (offset 0 = entry 0). Dword or qword accesses, naturally aligned; anything
   * else reads as zero and is ignored on write. Only the vector control's mask bit is writable in
   * that dword. `onChange(vector)` runs after an entry changed (to update interrupt routing).
   */
  tableDevice(onChange: (vector: number) => void = () => undefined): BusDevice {
    const ok = (offset: number, len: number): boolean =>
      (len === 4 || len === 8) && offset >= 0 && offset % len === 0 && offset + len <= this.tableBytes;
    return {
      read: (offset, data) => {
        if (!ok(offset, data.length)) { data.fill(0); return; }
        for (let i = 0; i < data.length; i++) data[i] = this.table.getUint8(offset + i);
      },
      write: (offset, data) => {
        if (!ok(offset, data.length)) return;
        const src = new DataView(data.buffer, data.byteOffset, data.length);
        for (let dword = 0; dword < data.length; dword += 4) {
          const at = offset + dword;
          const value = src.getUint32(dword, true);
          this.table.setUint32(at, at % ENTRY_BYTES === 12 ? value & VECTOR_MASKED : value, true);
        }
        onChange(Math.floor(offset / ENTRY_BYTES));
      },
    };
  }

  /** The PBA's MMIO: read-only (writes are ignored, as the spec allows). */
  pbaDevice(): BusDevice {
    return {
      read: (offset, data) => {
        if ((data.length !== 4 && data.length !== 8) || offset < 0 || offset % data.length !== 0 || offset + data.length > this.pba.byteLength) {
          data.fill(0);
          return;
        }
        for (let i = 0; i < data.length; i++) data[i] = this.pba.getUint8(offset + i);
      },
      write: () => undefined,
    };
  }
}

/**
 * Adds the MSI-X capability to `config`: table at `tableOffset` and PBA at `pbaOffset` in BAR
 * `bir`. Returns the capability's offset (its message control is at +2).
 */
export function addMsixCapability(config: PciConfigSpace, table: MsixTable, bir: number, tableOffset: number, pbaOffset: number): number {
  const body = new Uint8Array(10);
  const v = new DataView(body.buffer);
  v.setUint16(0, table.vectors - 1, true);
  v.setUint32(2, (tableOffset | bir) >>> 0, true);
  v.setUint32(6, (pbaOffset | bir) >>> 0, true);
  // Enable and function mask are the guest's to set.
  const writable = new Uint8Array(10);
  writable[1] = (CONTROL_ENABLE | CONTROL_FUNCTION_MASK) >> 8;
  return config.addCapability(PCI_CAP_ID_MSIX, body, writable);
}

/** Whether MSI-X is enabled and not function-masked, from the capability at `capOffset`. */
export function msixEnabled(config: PciConfigSpace, capOffset: number): { enabled: boolean; functionMasked: boolean } {
  const control = config.bytes[capOffset + 2]! | (config.bytes[capOffset + 3]! << 8);
  return { enabled: (control & CONTROL_ENABLE) !== 0, functionMasked: (control & CONTROL_FUNCTION_MASK) !== 0 };
}
