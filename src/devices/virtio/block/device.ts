// A virtio-blk device's I/O side: each request carried out on the backend, counted in the metrics.
import type { GuestMemory } from '../../../memory/guest-memory.js';
import type { VirtioPciState } from '../pci-device.js';
import type { DescriptorChain } from '../split-queue.js';
import { VirtioDeviceRuntime, type SignalMsi } from '../device-runtime.js';
import { handleBlockRequest, VIRTIO_BLK_S, VIRTIO_BLK_T, type BlockBackend } from './request.js';

/** Float64 slots of a device's metrics buffer. */
export const BLOCK_METRICS = { REQUESTS: 0, READ_BYTES: 1, WRITE_BYTES: 2, ERRORS: 3, NOTIFICATIONS: 4, FLUSHES: 5, SLOTS: 6 } as const;

export interface BlockDeviceMetrics {
  requests: number;
  readBytes: number;
  writeBytes: number;
  errors: number;
  notifications: number;
  flushes: number;
}

export function readBlockMetrics(buffer: SharedArrayBuffer): BlockDeviceMetrics {
  const m = new Float64Array(buffer);
  return {
    requests: m[BLOCK_METRICS.REQUESTS]!, readBytes: m[BLOCK_METRICS.READ_BYTES]!, writeBytes: m[BLOCK_METRICS.WRITE_BYTES]!,
    errors: m[BLOCK_METRICS.ERRORS]!, notifications: m[BLOCK_METRICS.NOTIFICATIONS]!, flushes: m[BLOCK_METRICS.FLUSHES]!,
  };
}

export class BlockDeviceRuntime extends VirtioDeviceRuntime {
  private readonly metrics: Float64Array;

  constructor(memory: GuestMemory, state: VirtioPciState, private readonly backend: BlockBackend, private readonly serial: string,
    metrics: SharedArrayBuffer, signalMsi: SignalMsi) {
    super(memory, state, signalMsi);
    this.metrics = new Float64Array(metrics);
  }

  protected handle(_q: number, chain: DescriptorChain): number {
    const r = handleBlockRequest(this.memory, chain, { backend: this.backend, serial: this.serial });
    const m = this.metrics;
    m[BLOCK_METRICS.REQUESTS]!++;
    if (r.status !== VIRTIO_BLK_S.OK) m[BLOCK_METRICS.ERRORS]!++;
    else if (r.type === VIRTIO_BLK_T.IN) m[BLOCK_METRICS.READ_BYTES]! += r.bytes;
    else if (r.type === VIRTIO_BLK_T.OUT) m[BLOCK_METRICS.WRITE_BYTES]! += r.bytes;
    else if (r.type === VIRTIO_BLK_T.FLUSH) m[BLOCK_METRICS.FLUSHES]!++;
    return r.written;
  }

  protected override notified(): void {
    this.metrics[BLOCK_METRICS.NOTIFICATIONS]!++;
  }

  protected override ringBroken(): void {
    this.metrics[BLOCK_METRICS.ERRORS]!++;
  }
}
