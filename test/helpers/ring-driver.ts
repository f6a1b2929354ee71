// The guest's half of a split virtqueue (virtio 1.2 §2.7), for unit tests and benchmarks that drive
// a device runtime without a guest: it writes descriptors and the available ring the way a Linux
// driver does, and collects what the device returned on the used ring, asking for an interrupt
// after each batch (used_event, VIRTIO_F_EVENT_IDX). Ring addresses are offsets into `memory`'s
// backing (its RAM at guest address 0, as test memories have it).
import type { GuestMemory } from '../../src/memory/guest-memory.js';
import type { TestQueue } from './virtio-driver.js';

export type RingLayout = TestQueue;
/** One buffer of a chain: guest address, length, and whether the device writes it. */
export type RingBuffer = readonly [gpa: number, len: number, writable: boolean];

const F_NEXT = 1;
const F_WRITE = 2;

export class RingDriver {
  private readonly view: DataView;
  private availIdx = 0;
  private usedIdx = 0;
  /** availIdx when the device was last notified. */
  private notifiedIdx = 0;

  constructor(memory: GuestMemory, readonly ring: RingLayout) {
    const bytes = memory.slice(0, memory.size);
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  /** Makes the chain `buffers`, written to descriptors `first`, `first`+1, … (modulo the ring size), available to the device. */
  offer(first: number, buffers: readonly RingBuffer[]): void {
    const { desc, avail, size } = this.ring;
    buffers.forEach(([gpa, len, writable], i) => {
      const at = desc + 16 * ((first + i) % size);
      this.view.setBigUint64(at, BigInt(gpa), true);
      this.view.setUint32(at + 8, len, true);
      this.view.setUint16(at + 12, (i < buffers.length - 1 ? F_NEXT : 0) | (writable ? F_WRITE : 0), true);
      this.view.setUint16(at + 14, (first + i + 1) % size, true);
    });
    this.view.setUint16(avail + 4 + 2 * (this.availIdx % size), first % size, true);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.view.setUint16(avail + 2, this.availIdx, true);
  }

  /** Chains made available so far (the available ring's index). */
  get offered(): number {
    return this.availIdx;
  }

  /** Whether the device asked to be notified of what was offered since the last notification (avail_event). */
  needsNotify(): boolean {
    const { used, size } = this.ring;
    const event = this.view.getUint16(used + 4 + 8 * size, true);
    const fresh = (this.availIdx - this.notifiedIdx) & 0xffff;
    this.notifiedIdx = this.availIdx;
    return ((this.availIdx - event - 1) & 0xffff) < fresh;
  }

  /** The chains returned since the last call, as [head, bytes written]; asks for an interrupt on the next. */
  reap(): [head: number, written: number][] {
    const { used, avail, size } = this.ring;
    const end = this.view.getUint16(used + 2, true);
    const out: [number, number][] = [];
    for (; this.usedIdx !== end; this.usedIdx = (this.usedIdx + 1) & 0xffff) {
      const at = used + 4 + 8 * (this.usedIdx % size);
      out.push([this.view.getUint32(at, true), this.view.getUint32(at + 4, true)]);
    }
    this.view.setUint16(avail + 4 + 2 * size, this.usedIdx, true);
    return out;
  }
}
