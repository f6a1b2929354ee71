// A virtio-blk device's I/O side: started when the driver sets DRIVER_OK, it pops requests from
// the queue on each notification, carries them out on the backend, returns them and interrupts the
// guest through MSI-X. A broken ring sets DEVICE_NEEDS_RESET; nothing the guest does reaches the host.
import type { GuestMemory } from '../../../memory/guest-memory.js';
import { MsixTable, msixEnabled } from '../../pci/msix.js';
import { PciConfigSpace } from '../../pci/config-space.js';
import { NO_VECTOR, STATUS, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VirtioPciCommonConfig } from '../pci-common.js';
import type { VirtioPciState } from '../pci-device.js';
import { QueueError, SplitQueue } from '../split-queue.js';
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

/** How the device raises an MSI: address and data from the vector's table entry. */
export type SignalMsi = (address: bigint, data: number) => void;

export class BlockDeviceRuntime {
  private readonly common: VirtioPciCommonConfig;
  private readonly msix: MsixTable;
  private readonly config: PciConfigSpace;
  private readonly metrics: Float64Array;
  private queues: (SplitQueue | undefined)[] | undefined;

  constructor(
    private readonly memory: GuestMemory,
    private readonly state: VirtioPciState,
    private readonly backend: BlockBackend,
    private readonly serial: string,
    metrics: SharedArrayBuffer,
    private readonly signalMsi: SignalMsi,
  ) {
    this.common = new VirtioPciCommonConfig(state.common);
    this.msix = new MsixTable(state.msix, state.msixVectors);
    this.config = new PciConfigSpace(state.config);
    this.metrics = new Float64Array(metrics);
  }

  /** The driver started or reset the device. */
  onControl(): void {
    const status = this.common.status;
    if (!(status & STATUS.DRIVER_OK) || (status & STATUS.DEVICE_NEEDS_RESET)) {
      this.queues = undefined;
      return;
    }
    if (this.queues) return;
    const features = this.common.driverFeatures;
    const flags = { indirect: (features & VIRTIO_F_INDIRECT_DESC) !== 0n, eventIdx: (features & VIRTIO_F_EVENT_IDX) !== 0n };
    try {
      this.queues = this.common.queueLayouts().map((l) => (l ? new SplitQueue(this.memory, l, flags) : undefined));
    } catch (e) {
      this.fail(e);
      return;
    }
    // Requests may have been made available before we were told to start.
    this.queues.forEach((_, q) => this.process(q));
  }

  /** A notification on queue `q`. */
  onNotify(q: number): void {
    this.metrics[BLOCK_METRICS.NOTIFICATIONS]!++;
    this.process(q);
  }

  private process(q: number): void {
    const queue = this.queues?.[q];
    if (!queue) return;
    try {
      for (let chain = queue.pop(); chain; chain = queue.pop()) {
        const r = handleBlockRequest(this.memory, chain, { backend: this.backend, serial: this.serial });
        queue.push(chain.head, r.written);
        this.count(r.type, r.status, r.bytes);
      }
    } catch (e) {
      this.fail(e);
      return;
    }
    if (queue.needsInterrupt()) this.interrupt(this.common.vector(q));
  }

  private count(type: number, status: number | undefined, bytes: number): void {
    const m = this.metrics;
    m[BLOCK_METRICS.REQUESTS]!++;
    if (status !== VIRTIO_BLK_S.OK) m[BLOCK_METRICS.ERRORS]!++;
    else if (type === VIRTIO_BLK_T.IN) m[BLOCK_METRICS.READ_BYTES]! += bytes;
    else if (type === VIRTIO_BLK_T.OUT) m[BLOCK_METRICS.WRITE_BYTES]! += bytes;
    else if (type === VIRTIO_BLK_T.FLUSH) m[BLOCK_METRICS.FLUSHES]!++;
  }

  /** A ring broke the rules: stop using it until the driver resets the device, and tell it. */
  private fail(e: unknown): void {
    if (!(e instanceof QueueError)) throw e;
    this.metrics[BLOCK_METRICS.ERRORS]!++;
    this.queues = undefined;
    this.common.setNeedsReset();
    this.interrupt(this.common.vector(-1));
  }

  private interrupt(vector: number): void {
    if (vector === NO_VECTOR || vector >= this.msix.vectors) return;
    const { enabled, functionMasked } = msixEnabled(this.config, this.state.msixCap);
    if (!enabled) return;
    const msg = this.msix.message(vector);
    if (msg.masked || functionMasked) {
      this.msix.setPending(vector, true);
      return;
    }
    this.signalMsi(msg.address, msg.data);
  }
}
