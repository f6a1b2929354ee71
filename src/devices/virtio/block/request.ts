// Virtio 1.2 §5.2.6: virtio-blk requests. A request is a descriptor chain: a 16-byte header
// (type, reserved, sector) in readable buffers, data (readable for writes, writable for reads),
// and a one-byte status as the very last writable byte. Everything is checked against the disk's
// size before the backend is touched: a bad request gets IOERR/UNSUPP, never a write outside the image.
import { concatBytes } from '../../../base/bytes.js';
import type { GuestMemory } from '../../../memory/guest-memory.js';
import type { DescriptorChain, GuestBuffer } from '../split-queue.js';

export const SECTOR = 512;
export const VIRTIO_BLK_T = { IN: 0, OUT: 1, FLUSH: 4, GET_ID: 8, DISCARD: 11, WRITE_ZEROES: 13 } as const;
export const VIRTIO_BLK_S = { OK: 0, IOERR: 1, UNSUPP: 2 } as const;
export const VIRTIO_BLK_ID_BYTES = 20;
/** Limits we advertise in the config space (max_discard_seg / max_write_zeroes_seg). */
export const MAX_SEGMENTS = 32;
const SEGMENT_BYTES = 16;
const WRITE_ZEROES_FLAG_UNMAP = 1;

/** Where a disk's bytes live. Offsets and lengths reach it only after the request checked them. */
export interface BlockBackend {
  readonly sizeBytes: number;
  readonly readOnly: boolean;
  /** Fills the buffers `into` (views of guest memory), one after another, from `offset`. */
  read(offset: number, into: readonly Uint8Array[]): void;
  /** Writes the buffers `from` back to back at `offset`; returns once the bytes are in the file (not necessarily on the disk). */
  write(offset: number, from: readonly Uint8Array[]): void;
  /** Makes every completed write durable. */
  flush(): void;
  /** The range need not keep its contents (a hole may be punched). */
  discard(offset: number, length: number): void;
  /** The range reads as zeroes afterwards; `unmap` allows a hole. */
  writeZeroes(offset: number, length: number, unmap: boolean): void;
}

export interface BlockRequestResult {
  /** Undefined when the chain has no writable byte for a status: nothing can be reported. */
  status?: number;
  /** Bytes written into the guest's buffers, status byte included (the used-ring length). */
  written: number;
  type: number;
  /** Data bytes moved (read or written), for metrics. */
  bytes: number;
}

class RequestError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** Copies `len` bytes starting `skip` bytes into the buffers (a gather across buffer boundaries). */
function gather(memory: GuestMemory, buffers: readonly GuestBuffer[], skip: number, len: number): Uint8Array {
  const parts = views(memory, buffers, skip, len);
  const found = parts.reduce((n, p) => n + p.length, 0);
  if (found < len) throw new RequestError(VIRTIO_BLK_S.IOERR, `request is ${len - found} bytes short`);
  return concatBytes(parts);
}

/** The guest-memory views of `buffers` covering `len` bytes from their start. */
function views(memory: GuestMemory, buffers: readonly GuestBuffer[], skip: number, len: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const b of buffers) {
    if (len === 0) break;
    if (skip >= b.len) { skip -= b.len; continue; }
    const n = Math.min(b.len - skip, len);
    out.push(memory.slice(b.gpa + skip, n));
    len -= n;
    skip = 0;
  }
  return out;
}

export interface BlockDeviceInfo {
  backend: BlockBackend;
  /** The drive's serial for GET_ID (at most 20 bytes are returned, not NUL-terminated if 20). */
  serial: string;
}

/** Carries out one request; never throws on anything the guest controls. */
export function handleBlockRequest(memory: GuestMemory, chain: DescriptorChain, dev: BlockDeviceInfo): BlockRequestResult {
  const writableBytes = chain.writableBytes;
  if (writableBytes === 0) return { written: 0, type: -1, bytes: 0 };
  const last = chain.writable[chain.writable.length - 1]!;
  const statusGpa = last.gpa + last.len - 1;
  // Data buffers that the guest lets us write: every writable byte but the status.
  const dataIn = writableBytes - 1;
  const readableBytes = chain.readable.reduce((n, b) => n + b.len, 0);
  let type = -1;
  let bytes = 0;
  let written = 1;
  let status: number = VIRTIO_BLK_S.OK;
  try {
    if (readableBytes < 16) throw new RequestError(VIRTIO_BLK_S.IOERR, 'request header missing');
    const header = new DataView(gather(memory, chain.readable, 0, 16).buffer);
    type = header.getUint32(0, true);
    const sector = header.getBigUint64(8, true);
    const dataOut = readableBytes - 16;
    const { backend } = dev;
    const range = (offsetSectors: bigint, length: number): number => {
      const offset = offsetSectors * BigInt(SECTOR);
      if (length % SECTOR !== 0) throw new RequestError(VIRTIO_BLK_S.IOERR, `length ${length} is not a whole number of sectors`);
      if (offset + BigInt(length) > BigInt(backend.sizeBytes)) {
        throw new RequestError(VIRTIO_BLK_S.IOERR, `sectors ${offsetSectors}+${length / SECTOR} are beyond the disk's end`);
      }
      return Number(offset);
    };
    const writable = (): void => {
      if (backend.readOnly) throw new RequestError(VIRTIO_BLK_S.IOERR, 'the drive is read-only');
    };
    switch (type) {
      case VIRTIO_BLK_T.IN: {
        backend.read(range(sector, dataIn), views(memory, chain.writable, 0, dataIn));
        bytes = dataIn;
        written += dataIn;
        break;
      }
      case VIRTIO_BLK_T.OUT: {
        writable();
        backend.write(range(sector, dataOut), views(memory, chain.readable, 16, dataOut));
        bytes = dataOut;
        break;
      }
      case VIRTIO_BLK_T.FLUSH:
        backend.flush();
        break;
      case VIRTIO_BLK_T.GET_ID: {
        const id = new Uint8Array(VIRTIO_BLK_ID_BYTES);
        id.set(new TextEncoder().encode(dev.serial).subarray(0, VIRTIO_BLK_ID_BYTES));
        const n = Math.min(dataIn, VIRTIO_BLK_ID_BYTES);
        let at = 0;
        for (const v of views(memory, chain.writable, 0, n)) {
          v.set(id.subarray(at, at + v.length));
          at += v.length;
        }
        written += n;
        break;
      }
      case VIRTIO_BLK_T.DISCARD:
      case VIRTIO_BLK_T.WRITE_ZEROES: {
        writable();
        if (dataOut === 0 || dataOut % SEGMENT_BYTES !== 0 || dataOut / SEGMENT_BYTES > MAX_SEGMENTS) {
          throw new RequestError(VIRTIO_BLK_S.IOERR, `${dataOut} bytes of segments (16 each, at most ${MAX_SEGMENTS})`);
        }
        const segs = new DataView(gather(memory, chain.readable, 16, dataOut).buffer);
        // Check every segment before acting on any, so a bad one leaves the disk untouched.
        const todo: [number, number, boolean][] = [];
        for (let at = 0; at < dataOut; at += SEGMENT_BYTES) {
          const start = segs.getBigUint64(at, true);
          const count = segs.getUint32(at + 8, true);
          const flags = segs.getUint32(at + 12, true);
          const discard = type === VIRTIO_BLK_T.DISCARD;
          if ((discard && flags !== 0) || (!discard && (flags & ~WRITE_ZEROES_FLAG_UNMAP) !== 0)) {
            throw new RequestError(VIRTIO_BLK_S.UNSUPP, `segment flags 0x${flags.toString(16)} not supported`);
          }
          todo.push([range(start, count * SECTOR), count * SECTOR, (flags & WRITE_ZEROES_FLAG_UNMAP) !== 0]);
        }
        for (const [offset, length, unmap] of todo) {
          if (type === VIRTIO_BLK_T.DISCARD) backend.discard(offset, length);
          else backend.writeZeroes(offset, length, unmap);
          bytes += length;
        }
        break;
      }
      default:
        throw new RequestError(VIRTIO_BLK_S.UNSUPP, `request type ${type} is not supported`);
    }
  } catch (e) {
    // A guest-caused error (RequestError) or the backend's I/O error: the request fails, the device lives.
    status = e instanceof RequestError ? e.status : VIRTIO_BLK_S.IOERR;
    written = 1;
    bytes = 0;
  }
  memory.setU8(statusGpa, status);
  return { status, written, type, bytes };
}

/** A disk in memory (tests, scratch drives). */
export class MemoryDisk implements BlockBackend {
  readonly data: Uint8Array;
  flushes = 0;

  constructor(sizeBytes: number, readonly readOnly = false) {
    this.data = new Uint8Array(sizeBytes);
  }

  get sizeBytes(): number {
    return this.data.length;
  }

  read(offset: number, into: readonly Uint8Array[]): void {
    for (const v of into) {
      v.set(this.data.subarray(offset, offset + v.length));
      offset += v.length;
    }
  }

  write(offset: number, from: readonly Uint8Array[]): void {
    if (this.readOnly) throw new Error('read-only');
    for (const v of from) {
      this.data.set(v, offset);
      offset += v.length;
    }
  }

  flush(): void {
    this.flushes++;
  }

  discard(offset: number, length: number): void {
    this.data.fill(0, offset, offset + length);
  }

  writeZeroes(offset: number, length: number): void {
    this.data.fill(0, offset, offset + length);
  }
}
