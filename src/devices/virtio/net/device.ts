// A virtio-net device's I/O side (virtio 1.2 §5.1.6): frames from the transmit queue go to the
// backend (a TAP) with their virtio-net header; frames from the backend fill the driver's receive
// buffers, spread over several with mergeable RX buffers (num_buffers in the header). A frame that
// finds too few buffers waits, and the backend is not read, until the driver adds more; whatever
// the guest sends that is malformed is dropped and counted, never an error out of the device.
import type { GuestMemory } from '../../../memory/guest-memory.js';
import type { VirtioPciState } from '../pci-device.js';
import type { DescriptorChain } from '../split-queue.js';
import { VirtioDeviceRuntime, type SignalMsi } from '../device-runtime.js';
import { isLinkUp, NET_QUEUE, VIRTIO_NET_F } from './config.js';

/** struct virtio_net_hdr_v1: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset, num_buffers. */
export const NET_HDR_BYTES = 12;
const NUM_BUFFERS_OFFSET = 10;
/** The largest frame either way: a 64 KiB GSO packet plus its Ethernet header, after the virtio header. */
export const MAX_FRAME_BYTES = NET_HDR_BYTES + 65535 + 14;

export interface NetBackend {
  /** Sends one frame (virtio header first) gathered from `parts`; false when the host refused it. */
  send(parts: readonly Uint8Array[]): boolean;
  /** Reads one waiting frame (virtio header first) into `into`: its length, or -1 when none waits. */
  receive(into: Uint8Array): number;
  /** Whether we want to hear that frames are waiting (not while the guest gives us no buffers). */
  setReceiveInterest(wanted: boolean): void;
  /** The driver's accepted features: which offloads the host may use towards the guest. */
  setGuestFeatures(features: bigint): void;
}

/** Float64 slots of the metrics buffer. */
export const NET_METRICS = { TX_PACKETS: 0, TX_BYTES: 1, TX_DROPPED: 2, RX_PACKETS: 3, RX_BYTES: 4, RX_DROPPED: 5, NOTIFICATIONS: 6, ERRORS: 7, SLOTS: 8 } as const;

export interface NetDeviceMetrics {
  txPackets: number;
  txBytes: number;
  txDropped: number;
  rxPackets: number;
  rxBytes: number;
  rxDropped: number;
  notifications: number;
  errors: number;
}

export function readNetMetrics(buffer: SharedArrayBuffer): NetDeviceMetrics {
  const m = new Float64Array(buffer);
  return {
    txPackets: m[NET_METRICS.TX_PACKETS]!, txBytes: m[NET_METRICS.TX_BYTES]!, txDropped: m[NET_METRICS.TX_DROPPED]!,
    rxPackets: m[NET_METRICS.RX_PACKETS]!, rxBytes: m[NET_METRICS.RX_BYTES]!, rxDropped: m[NET_METRICS.RX_DROPPED]!,
    notifications: m[NET_METRICS.NOTIFICATIONS]!, errors: m[NET_METRICS.ERRORS]!,
  };
}

export class NetDeviceRuntime extends VirtioDeviceRuntime {
  private readonly metrics: Float64Array;
  private readonly frame = new Uint8Array(MAX_FRAME_BYTES);
  /** Length of a frame read from the backend and not yet delivered (0: none). */
  private pendingBytes = 0;
  /** Receive buffers taken from the ring for the pending frame. */
  private held: DescriptorChain[] = [];
  private mergeable = false;

  constructor(memory: GuestMemory, state: VirtioPciState, private readonly backend: NetBackend, metrics: SharedArrayBuffer, signalMsi: SignalMsi) {
    super(memory, state, signalMsi);
    this.metrics = new Float64Array(metrics);
    this.announcedLinkUp = isLinkUp(state.deviceConfig);
  }

  /** Link state as last told to the driver. */
  private announcedLinkUp: boolean;

  /** The backend has frames waiting. */
  onBackendReadable(): void {
    this.receive();
  }

  /** The link may have gone down or up (main thread, `vm.setLinkUp`): tell the driver (§5.1.4, VIRTIO_NET_F_STATUS). */
  override onControl(): void {
    super.onControl();
    const up = isLinkUp(this.state.deviceConfig);
    if (up !== this.announcedLinkUp) {
      this.announcedLinkUp = up;
      this.configChanged();
      // While the cable is out, frames from the host wait in the TAP (it drops them when full).
      const running = this.queue(NET_QUEUE.RX) !== undefined;
      this.backend.setReceiveInterest(running && up && this.pendingBytes === 0);
      if (up) this.receive();
    }
  }

  protected override started(features: bigint): void {
    this.mergeable = (features & VIRTIO_NET_F.MRG_RXBUF) !== 0n;
    this.backend.setGuestFeatures(features);
    this.backend.setReceiveInterest(this.announcedLinkUp);
  }

  protected override stopped(): void {
    // Buffers of a reset device are the driver's again; a pending frame is lost with them.
    this.held = [];
    if (this.pendingBytes > 0) this.metrics[NET_METRICS.RX_DROPPED]!++;
    this.pendingBytes = 0;
    this.backend.setReceiveInterest(false);
  }

  protected override process(q: number): void {
    if (q === NET_QUEUE.RX) this.receive();
    else super.process(q);
  }

  /** A transmit request: the readable buffers are one frame, header first. Nothing is written back. */
  protected handle(q: number, chain: DescriptorChain): number {
    const m = this.metrics;
    if (q !== NET_QUEUE.TX) return 0;
    const bytes = chain.readable.reduce((n, b) => n + b.len, 0);
    if (chain.writable.length > 0 || bytes <= NET_HDR_BYTES || bytes > MAX_FRAME_BYTES) {
      m[NET_METRICS.TX_DROPPED]!++;
      return 0;
    }
    if (this.backend.send(chain.readable.map((b) => this.memory.slice(b.gpa, b.len)))) {
      m[NET_METRICS.TX_PACKETS]!++;
      m[NET_METRICS.TX_BYTES]! += bytes - NET_HDR_BYTES;
    } else {
      m[NET_METRICS.TX_DROPPED]!++;
    }
    return 0;
  }

  /** Moves waiting frames into receive buffers until either runs out. */
  private receive(): void {
    const rx = this.queue(NET_QUEUE.RX);
    if (!rx || !this.announcedLinkUp) {
      // Readiness we cannot act on must not be reported again and again (epoll is level-triggered).
      this.backend.setReceiveInterest(false);
      return;
    }
    let delivered = false;
    try {
      for (;;) {
        if (this.pendingBytes === 0) {
          const n = this.backend.receive(this.frame);
          if (n < 0) break;
          if (n <= NET_HDR_BYTES) { this.metrics[NET_METRICS.RX_DROPPED]!++; continue; }
          this.pendingBytes = n;
        }
        if (!this.takeBuffers()) {
          // No room: leave frames in the backend until the driver adds buffers (it notifies RX).
          this.backend.setReceiveInterest(false);
          break;
        }
        this.deliver();
        delivered = true;
      }
      this.backend.setReceiveInterest(this.pendingBytes === 0);
    } catch (e) {
      this.broken(e);
      return;
    }
    if (delivered) this.returned(NET_QUEUE.RX);
  }

  /** Holds enough receive buffers for the pending frame; false if the ring ran dry first. */
  private takeBuffers(): boolean {
    const rx = this.queue(NET_QUEUE.RX)!;
    for (;;) {
      const room = this.held.reduce((n, c) => n + c.writableBytes, 0);
      if (room >= this.pendingBytes && this.held.length > 0) return true;
      // Without mergeable buffers a frame must fit one chain: a smaller chain is returned unused.
      if (!this.mergeable && this.held.length > 0) {
        this.metrics[NET_METRICS.RX_DROPPED]!++;
        this.pendingBytes = 0;
        return true;
      }
      const chain = rx.pop();
      if (!chain) return false;
      if (chain.readable.length > 0 || chain.writableBytes < NET_HDR_BYTES) {
        // Not a receive buffer: hand it back empty and count the driver's mistake.
        this.metrics[NET_METRICS.ERRORS]!++;
        rx.push(chain.head, 0);
        continue;
      }
      this.held.push(chain);
    }
  }

  /** Copies the pending frame over the held buffers and returns them, in order. */
  private deliver(): void {
    const rx = this.queue(NET_QUEUE.RX)!;
    const chains = this.held;
    this.held = [];
    const total = this.pendingBytes;
    this.pendingBytes = 0;
    let count = 0;
    for (let room = 0; room < total; count++) room += chains[count]!.writableBytes;
    // num_buffers is set in the frame before it is copied: the header reaches the guest complete.
    this.frame[NUM_BUFFERS_OFFSET] = count & 0xff;
    this.frame[NUM_BUFFERS_OFFSET + 1] = count >> 8;
    let at = 0;
    for (const chain of chains) {
      let written = 0;
      for (const b of chain.writable) {
        if (at >= total) break;
        const n = Math.min(b.len, total - at);
        this.memory.slice(b.gpa, n).set(this.frame.subarray(at, at + n));
        at += n;
        written += n;
      }
      rx.push(chain.head, written);
    }
    if (total === 0) return;
    this.metrics[NET_METRICS.RX_PACKETS]!++;
    this.metrics[NET_METRICS.RX_BYTES]! += total - NET_HDR_BYTES;
  }

  protected override notified(): void {
    this.metrics[NET_METRICS.NOTIFICATIONS]!++;
  }

  protected override ringBroken(): void {
    this.metrics[NET_METRICS.ERRORS]!++;
  }
}
