// Virtio 1.2 §5.4: the entropy device. One queue; each request's writable buffers are filled from
// the host's CSPRNG (getrandom, through Web Crypto) and returned.
import { webcrypto } from 'node:crypto';
import type { GuestMemory } from '../../memory/guest-memory.js';
import type { VirtioPciState } from './pci-device.js';
import type { DescriptorChain } from './split-queue.js';
import { VirtioDeviceRuntime, type SignalMsi } from './device-runtime.js';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC } from './pci-common.js';

export const RNG_FEATURES = VIRTIO_F_INDIRECT_DESC | VIRTIO_F_EVENT_IDX;
/** At most this much entropy per request (a guest asking for more gets a short answer, as allowed). */
const MAX_BYTES_PER_REQUEST = 64 * 1024;
/** Float64 slots of the metrics buffer. */
export const RNG_METRICS = { REQUESTS: 0, BYTES: 1, NOTIFICATIONS: 2, ERRORS: 3, SLOTS: 4 } as const;

/** Fills `buffers` of guest memory with random bytes, up to `max` in all; returns how many. */
export function fillRandom(memory: GuestMemory, chain: DescriptorChain, max = MAX_BYTES_PER_REQUEST): number {
  let done = 0;
  for (const b of chain.writable) {
    if (done >= max) break;
    const len = Math.min(b.len, max - done);
    webcrypto.getRandomValues(memory.slice(b.gpa, len));
    done += len;
  }
  return done;
}

export class RngDeviceRuntime extends VirtioDeviceRuntime {
  private readonly metrics: Float64Array;

  constructor(memory: GuestMemory, state: VirtioPciState, metrics: SharedArrayBuffer, signalMsi: SignalMsi) {
    super(memory, state, signalMsi);
    this.metrics = new Float64Array(metrics);
  }

  protected handle(_q: number, chain: DescriptorChain): number {
    const n = fillRandom(this.memory, chain);
    this.metrics[RNG_METRICS.REQUESTS]!++;
    this.metrics[RNG_METRICS.BYTES]! += n;
    return n;
  }

  protected override notified(): void {
    this.metrics[RNG_METRICS.NOTIFICATIONS]!++;
  }

  protected override ringBroken(): void {
    this.metrics[RNG_METRICS.ERRORS]!++;
  }
}
