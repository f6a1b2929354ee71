// The I/O side every virtio-pci device shares: started when the driver sets DRIVER_OK, it pops
// requests from the queues on each notification, lets the device carry them out, returns them and
// interrupts the guest through MSI-X. A broken ring sets DEVICE_NEEDS_RESET; nothing the guest
// does reaches the host.
import type { GuestMemory } from '../../memory/guest-memory.js';
import { MsixTable, msixEnabled } from '../pci/msix.js';
import { PciConfigSpace } from '../pci/config-space.js';
import { NO_VECTOR, STATUS, VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VirtioPciCommonConfig } from './pci-common.js';
import type { VirtioPciState } from './pci-device.js';
import { QueueError, SplitQueue, type DescriptorChain } from './split-queue.js';

/** How the device raises MSI-X vector `vector` with the message from its table entry. */
export type SignalMsi = (vector: number, address: bigint, data: number) => void;

export abstract class VirtioDeviceRuntime {
  private readonly common: VirtioPciCommonConfig;
  private readonly msix: MsixTable;
  private readonly config: PciConfigSpace;
  private queues: (SplitQueue | undefined)[] | undefined;
  private reportedBug = false;

  constructor(protected readonly memory: GuestMemory, protected readonly state: VirtioPciState, private readonly signalMsi: SignalMsi) {
    this.common = new VirtioPciCommonConfig(state.common);
    this.msix = new MsixTable(state.msix, state.msixVectors);
    this.config = new PciConfigSpace(state.config);
  }

  /** Carries out one request from queue `q`; returns the bytes written into the guest's buffers, or -1 to keep the chain (returned later). */
  protected abstract handle(q: number, chain: DescriptorChain): number;

  /** Counts a notification, a broken ring (for metrics). */
  protected notified(): void {}
  protected ringBroken(): void {}
  /** The driver started the device with these features (queues are up), or it stopped (reset, broken ring). */
  protected started(_features: bigint): void {}
  protected stopped(): void {}

  /** Queue `q` while the device runs. */
  protected queue(q: number): SplitQueue | undefined {
    return this.queues?.[q];
  }

  /** Interrupts the driver for queue `q` if what was returned on it since the last time asks for one. */
  protected returned(q: number): void {
    const queue = this.queues?.[q];
    if (queue?.needsInterrupt()) this.interrupt(this.common.vector(q));
  }

  /** Tells the driver the device configuration changed (§4.1.4.5: ISR bit 1 and the config vector). */
  protected configChanged(): void {
    if (!this.queues) return;
    Atomics.or(new Int32Array(this.state.isr), 0, 2);
    this.interrupt(this.common.vector(-1));
  }

  /** Marks the device broken (DEVICE_NEEDS_RESET) after a QueueError, or any other error (reported: a bug). */
  protected broken(e: unknown): void {
    this.fail(e);
  }

  /** The driver started or reset the device, or unmasked a vector with an interrupt pending. */
  onControl(): void {
    this.deliverPending();
    const status = this.common.status;
    if (!(status & STATUS.DRIVER_OK) || (status & STATUS.DEVICE_NEEDS_RESET)) {
      if (this.queues) this.stopped();
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
    this.started(features);
    // Requests may have been made available before we were told to start.
    this.queues.forEach((_, q) => this.process(q));
  }

  /** A notification on queue `q`. */
  onNotify(q: number): void {
    this.notified();
    this.process(q);
  }

  protected process(q: number): void {
    const queue = this.queues?.[q];
    if (!queue) return;
    try {
      for (let chain = queue.pop(); chain; chain = queue.pop()) {
        const written = this.handle(q, chain);
        if (written >= 0) queue.push(chain.head, written);
      }
    } catch (e) {
      this.fail(e);
      return;
    }
    if (queue.needsInterrupt()) this.interrupt(this.common.vector(q));
  }

  /**
   * A ring broke the rules: stop using it until the driver resets the device, and tell it. Any
   * other error is a bug of ours; it too stops only this device (reported once), never the I/O
   * thread and the VM's other devices.
   */
  private fail(e: unknown): void {
    if (!(e instanceof QueueError) && !this.reportedBug) {
      this.reportedBug = true;
      console.error(`typevisor: a virtio device failed and needs a reset by its driver: ${e instanceof Error ? e.stack ?? e.message : String(e)}`);
    }
    this.ringBroken();
    if (this.queues) this.stopped();
    this.queues = undefined;
    this.common.setNeedsReset();
    this.interrupt(this.common.vector(-1));
  }

  /** Interrupts held back while their vector was masked go out once it is unmasked (PCI 3.0 §6.8.3.4). */
  private deliverPending(): void {
    const { enabled, functionMasked } = msixEnabled(this.config, this.state.msixCap);
    if (!enabled || functionMasked) return;
    for (let v = 0; v < this.msix.vectors; v++) {
      if (!this.msix.isPending(v)) continue;
      const msg = this.msix.message(v);
      if (msg.masked) continue;
      this.msix.setPending(v, false);
      this.signalMsi(v, msg.address, msg.data);
    }
  }

  private interrupt(vector: number): void {
    if (vector === NO_VECTOR || vector >= this.msix.vectors) return;
    const { enabled, functionMasked } = msixEnabled(this.config, this.state.msixCap);
    // Without MSI-X (INTx) we raise nothing: every driver of ours enables MSI-X.
    if (!enabled) return;
    const msg = this.msix.message(vector);
    if (msg.masked || functionMasked) {
      this.msix.setPending(vector, true);
      return;
    }
    this.signalMsi(vector, msg.address, msg.data);
  }
}
