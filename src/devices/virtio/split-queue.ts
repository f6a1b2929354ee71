// Virtio 1.2 §2.7: split virtqueues, the device side. Everything in the rings is written by a guest
// that may be hostile: every index, address, length and flag is checked before use, and a ring
// that breaks the rules yields a QueueError (the device then fails the request or sets
// DEVICE_NEEDS_RESET) — never an access outside guest memory, never an endless walk.
import type { GuestMemory } from '../../memory/guest-memory.js';

/** Descriptor flags (§2.7.5). */
export const VIRTQ_DESC_F = { NEXT: 1, WRITE: 2, INDIRECT: 4 } as const;
/** Avail ring flag: the driver does not want interrupts (without EVENT_IDX). */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;

const DESC_SIZE = 16;
export const MAX_QUEUE_SIZE = 32768;
/** Bytes one request may move (all its buffers together): far above any real request, below what could exhaust the host. */
export const MAX_CHAIN_BYTES = 2 ** 31;

export class QueueError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'QueueError';
  }
}

/** One buffer of a chain: guest-physical, already checked to lie inside guest RAM. */
export interface GuestBuffer {
  gpa: number;
  len: number;
}

/** A request: the head index (to return in the used ring) and its buffers, readable ones first. */
export interface DescriptorChain {
  head: number;
  readable: GuestBuffer[];
  writable: GuestBuffer[];
  /** Sum of the writable buffers' lengths. */
  writableBytes: number;
}

export interface QueueLayout {
  size: number;
  desc: number;
  avail: number;
  used: number;
}

export interface QueueFeatures {
  /** VIRTIO_F_INDIRECT_DESC negotiated. */
  indirect: boolean;
  /** VIRTIO_F_EVENT_IDX negotiated. */
  eventIdx: boolean;
}

/** The device's view of one split virtqueue. */
export class SplitQueue {
  private nextAvail = 0;
  private nextUsed = 0;
  /** nextUsed at the last time the guest was notified (EVENT_IDX). */
  private signalledUsed = 0;

  constructor(private readonly memory: GuestMemory, readonly layout: QueueLayout, private readonly features: QueueFeatures) {
    const { size, desc, avail, used } = layout;
    if (!Number.isInteger(size) || size < 1 || size > MAX_QUEUE_SIZE || (size & (size - 1)) !== 0) {
      throw new QueueError(`queue size ${size} is not a power of 2 in 1..${MAX_QUEUE_SIZE}`);
    }
    // §2.7: alignment 16 / 2 / 4, and every part inside guest RAM (used_event / avail_event included).
    const parts: [string, number, number, number][] = [
      ['descriptor table', desc, DESC_SIZE * size, 16], ['available ring', avail, 6 + 2 * size, 2], ['used ring', used, 6 + 8 * size, 4],
    ];
    for (const [what, gpa, len, align] of parts) {
      if (gpa % align !== 0) throw new QueueError(`${what} at 0x${gpa.toString(16)} is not ${align}-byte aligned`);
      if (!memory.contains(gpa, len)) throw new QueueError(`${what} at 0x${gpa.toString(16)}+${len} is outside guest memory`);
    }
  }

  /** The next request the driver made available, or undefined when there is none. */
  pop(): DescriptorChain | undefined {
    const { size, avail } = this.layout;
    const availIdx = this.memory.getU16(avail + 2);
    const pending = (availIdx - this.nextAvail) & 0xffff;
    if (pending === 0) return undefined;
    if (pending > size) throw new QueueError(`available index moved ${pending} entries ahead, more than the queue size ${size}`);
    const head = this.memory.getU16(avail + 4 + 2 * (this.nextAvail % size));
    this.nextAvail = (this.nextAvail + 1) & 0xffff;
    if (this.features.eventIdx) this.memory.setU16(this.layout.used + 4 + 8 * size, this.nextAvail);
    return { head, ...this.walk(head) };
  }

  /** Requests made available and not yet popped. */
  get pendingCount(): number {
    return (this.memory.getU16(this.layout.avail + 2) - this.nextAvail) & 0xffff;
  }

  private walk(head: number): Omit<DescriptorChain, 'head'> {
    const { size, desc } = this.layout;
    const chain: Omit<DescriptorChain, 'head'> = { readable: [], writable: [], writableBytes: 0 };
    let total = 0;
    const take = (gpa: bigint, len: number, write: boolean): void => {
      if (len === 0) return;
      if (gpa > BigInt(Number.MAX_SAFE_INTEGER) || !this.memory.contains(Number(gpa), len)) {
        throw new QueueError(`buffer 0x${gpa.toString(16)}+${len} is outside guest memory`);
      }
      total += len;
      if (total > MAX_CHAIN_BYTES) throw new QueueError(`request buffers exceed ${MAX_CHAIN_BYTES} bytes`);
      if (write) {
        chain.writable.push({ gpa: Number(gpa), len });
        chain.writableBytes += len;
      } else {
        // §2.7.4.2: the device MUST treat a readable buffer after a writable one as an error.
        if (chain.writable.length > 0) throw new QueueError('a device-readable buffer follows a device-writable one');
        chain.readable.push({ gpa: Number(gpa), len });
      }
    };
    let index = head;
    // Each descriptor of the table at most once: a longer walk means a loop.
    for (let steps = 0; ; steps++) {
      if (index >= size) throw new QueueError(`descriptor index ${index} is beyond the queue size ${size}`);
      if (steps >= size) throw new QueueError(`descriptor chain longer than the queue size ${size} (a loop?)`);
      const at = desc + DESC_SIZE * index;
      const addr = this.memory.getU64(at);
      const len = this.memory.getU32(at + 8);
      const flags = this.memory.getU16(at + 12);
      if (flags & VIRTQ_DESC_F.INDIRECT) {
        if (!this.features.indirect) throw new QueueError('indirect descriptor without VIRTIO_F_INDIRECT_DESC');
        if (flags & VIRTQ_DESC_F.NEXT) throw new QueueError('descriptor is both INDIRECT and NEXT');
        this.walkIndirect(addr, len, take);
        return chain;
      }
      take(addr, len, (flags & VIRTQ_DESC_F.WRITE) !== 0);
      if (!(flags & VIRTQ_DESC_F.NEXT)) return chain;
      index = this.memory.getU16(at + 14);
    }
  }

  private walkIndirect(addr: bigint, len: number, take: (gpa: bigint, len: number, write: boolean) => void): void {
    if (len === 0 || len % DESC_SIZE !== 0) throw new QueueError(`indirect table length ${len} is not a positive multiple of 16`);
    const count = len / DESC_SIZE;
    if (addr > BigInt(Number.MAX_SAFE_INTEGER) || !this.memory.contains(Number(addr), len)) {
      throw new QueueError(`indirect table 0x${addr.toString(16)}+${len} is outside guest memory`);
    }
    const table = Number(addr);
    let index = 0;
    for (let steps = 0; ; steps++) {
      if (index >= count) throw new QueueError(`indirect descriptor index ${index} is beyond its table of ${count}`);
      if (steps >= count) throw new QueueError('indirect descriptor chain loops');
      const at = table + DESC_SIZE * index;
      const flags = this.memory.getU16(at + 12);
      if (flags & VIRTQ_DESC_F.INDIRECT) throw new QueueError('an indirect table holds another indirect descriptor');
      take(this.memory.getU64(at), this.memory.getU32(at + 8), (flags & VIRTQ_DESC_F.WRITE) !== 0);
      if (!(flags & VIRTQ_DESC_F.NEXT)) return;
      index = this.memory.getU16(at + 14);
    }
  }

  /** Returns a request to the driver with the number of bytes written into its buffers. */
  push(head: number, written: number): void {
    const { size, used } = this.layout;
    const slot = used + 4 + 8 * (this.nextUsed % size);
    this.memory.setU32(slot, head);
    this.memory.setU32(slot + 4, written);
    this.nextUsed = (this.nextUsed + 1) & 0xffff;
    // The element is in place before the index that publishes it (x86 keeps stores in order).
    this.memory.setU16(used + 2, this.nextUsed);
  }

  /**
   * Whether the driver wants an interrupt for what was pushed since the last one: with EVENT_IDX,
   * when used_event was crossed (§2.7.10, vring_need_event); otherwise unless it set NO_INTERRUPT.
   */
  needsInterrupt(): boolean {
    const { size, avail } = this.layout;
    const old = this.signalledUsed;
    const now = this.nextUsed;
    if (now === old) return false;
    this.signalledUsed = now;
    if (!this.features.eventIdx) return (this.memory.getU16(avail) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
    const usedEvent = this.memory.getU16(avail + 4 + 2 * size);
    return ((now - usedEvent - 1) & 0xffff) < ((now - old) & 0xffff);
  }

  /** Ring positions, for device reset and snapshots. */
  get position(): { nextAvail: number; nextUsed: number } {
    return { nextAvail: this.nextAvail, nextUsed: this.nextUsed };
  }
}
