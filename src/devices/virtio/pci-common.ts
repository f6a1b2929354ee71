// Virtio 1.2 §4.1.4.3: the common configuration structure of the virtio-pci (modern) transport —
// feature negotiation, device status, queue set-up. Its state is in a SharedArrayBuffer so that
// the vCPU thread that exits on an access serves it in place (no cross-thread hop), and the I/O
// side reads the queues it must serve once the driver sets DRIVER_OK.
import type { BusDevice } from '../bus-device.js';
import { MAX_QUEUE_SIZE, type QueueLayout } from './split-queue.js';

/** Device status bits (§2.1). */
export const STATUS = { ACKNOWLEDGE: 1, DRIVER: 2, DRIVER_OK: 4, FEATURES_OK: 8, DEVICE_NEEDS_RESET: 0x40, FAILED: 0x80 } as const;
export const VIRTIO_F_VERSION_1 = 1n << 32n;
export const VIRTIO_F_INDIRECT_DESC = 1n << 28n;
export const VIRTIO_F_EVENT_IDX = 1n << 29n;
export const NO_VECTOR = 0xffff;

/** Register offsets of struct virtio_pci_common_cfg. */
export const COMMON = {
  DEVICE_FEATURE_SELECT: 0x00, DEVICE_FEATURE: 0x04, DRIVER_FEATURE_SELECT: 0x08, DRIVER_FEATURE: 0x0c,
  CONFIG_MSIX_VECTOR: 0x10, NUM_QUEUES: 0x12, DEVICE_STATUS: 0x14, CONFIG_GENERATION: 0x15,
  QUEUE_SELECT: 0x16, QUEUE_SIZE: 0x18, QUEUE_MSIX_VECTOR: 0x1a, QUEUE_ENABLE: 0x1c, QUEUE_NOTIFY_OFF: 0x1e,
  QUEUE_DESC: 0x20, QUEUE_DRIVER: 0x28, QUEUE_DEVICE: 0x30, SIZE: 0x38,
} as const;

// Int32 slots of the shared state: the device-wide words, then QUEUE_WORDS per queue.
const W = { DEV_FEAT_LO: 0, DEV_FEAT_HI: 1, DRV_FEAT_LO: 2, DRV_FEAT_HI: 3, DEV_SEL: 4, DRV_SEL: 5, CONFIG_VECTOR: 6, STATUS: 7, GENERATION: 8, QUEUE_SEL: 9, NUM_QUEUES: 10, VECTORS: 11, HEADER: 12 } as const;
const Q = { MAX: 0, SIZE: 1, VECTOR: 2, ENABLE: 3, DESC_LO: 4, DESC_HI: 5, DRIVER_LO: 6, DRIVER_HI: 7, DEVICE_LO: 8, DEVICE_HI: 9, WORDS: 10 } as const;

export interface CommonConfigEvents {
  /** The driver set DRIVER_OK with these queues enabled: start serving them. */
  activate?(queues: (QueueLayout | undefined)[], features: bigint): void;
  /** The driver wrote 0 to the status (device reset): stop serving and forget the queues. */
  reset?(): void;
}

export class VirtioPciCommonConfig {
  readonly state: SharedArrayBuffer;
  private readonly w: Int32Array;

  /** `queueMaxSizes`: the largest ring each queue accepts; `msixVectors`: how many vectors the table has. */
  static create(deviceFeatures: bigint, queueMaxSizes: readonly number[], msixVectors: number): VirtioPciCommonConfig {
    const c = new VirtioPciCommonConfig(new SharedArrayBuffer(4 * (W.HEADER + Q.WORDS * queueMaxSizes.length)));
    const features = deviceFeatures | VIRTIO_F_VERSION_1;
    c.w[W.DEV_FEAT_LO] = Number(features & 0xffffffffn) | 0;
    c.w[W.DEV_FEAT_HI] = Number(features >> 32n) | 0;
    c.w[W.NUM_QUEUES] = queueMaxSizes.length;
    c.w[W.VECTORS] = msixVectors;
    queueMaxSizes.forEach((max, i) => {
      if (max < 1 || max > MAX_QUEUE_SIZE || (max & (max - 1)) !== 0) throw new Error(`queue ${i}: bad maximum size ${max}`);
      c.w[W.HEADER + Q.WORDS * i + Q.MAX] = max;
    });
    c.resetState();
    return c;
  }

  constructor(state: SharedArrayBuffer) {
    this.state = state;
    this.w = new Int32Array(state);
  }

  get status(): number {
    return Atomics.load(this.w, W.STATUS);
  }

  get numQueues(): number {
    return this.w[W.NUM_QUEUES]!;
  }

  get driverFeatures(): bigint {
    return (BigInt(this.w[W.DRV_FEAT_HI]! >>> 0) << 32n) | BigInt(this.w[W.DRV_FEAT_LO]! >>> 0);
  }

  get deviceFeatures(): bigint {
    return (BigInt(this.w[W.DEV_FEAT_HI]! >>> 0) << 32n) | BigInt(this.w[W.DEV_FEAT_LO]! >>> 0);
  }

  /** The MSI-X vector of queue `q` (NO_VECTOR if none), or of configuration changes with q = -1. */
  vector(q: number): number {
    return q < 0 ? this.w[W.CONFIG_VECTOR]! : this.w[W.HEADER + Q.WORDS * q + Q.VECTOR]!;
  }

  /** The device gave up on the driver's use of it (§2.1.2): the driver must reset it. */
  setNeedsReset(): void {
    Atomics.or(this.w, W.STATUS, STATUS.DEVICE_NEEDS_RESET);
    Atomics.add(this.w, W.GENERATION, 1);
  }

  private resetState(): void {
    for (const slot of [W.DRV_FEAT_LO, W.DRV_FEAT_HI, W.DEV_SEL, W.DRV_SEL, W.STATUS, W.QUEUE_SEL]) this.w[slot] = 0;
    this.w[W.CONFIG_VECTOR] = NO_VECTOR;
    for (let q = 0; q < this.numQueues; q++) {
      const base = W.HEADER + Q.WORDS * q;
      this.w.fill(0, base + Q.SIZE, base + Q.WORDS);
      this.w[base + Q.SIZE] = this.w[base + Q.MAX]!;
      this.w[base + Q.VECTOR] = NO_VECTOR;
    }
  }

  private queueBase(): number | undefined {
    const q = this.w[W.QUEUE_SEL]!;
    return q < this.numQueues ? W.HEADER + Q.WORDS * q : undefined;
  }

  /** Each queue's rings as the driver set them up (undefined for a queue it did not enable). */
  queueLayouts(): (QueueLayout | undefined)[] {
    return Array.from({ length: this.numQueues }, (_, q) => this.queueLayout(q));
  }

  private queueLayout(q: number): QueueLayout | undefined {
    const b = W.HEADER + Q.WORDS * q;
    if (this.w[b + Q.ENABLE] !== 1) return undefined;
    const u64 = (lo: number): number => (this.w[b + lo]! >>> 0) + (this.w[b + lo + 1]! >>> 0) * 2 ** 32;
    return { size: this.w[b + Q.SIZE]!, desc: u64(Q.DESC_LO), avail: u64(Q.DRIVER_LO), used: u64(Q.DEVICE_LO) };
  }

  /** Reads a register; unknown offsets and widths read as zero. */
  read(offset: number, len: number): number {
    const qb = this.queueBase();
    const q = (slot: number): number => (qb === undefined ? 0 : this.w[qb + slot]! >>> 0);
    switch (`${offset}:${len}`) {
      case `${COMMON.DEVICE_FEATURE_SELECT}:4`: return this.w[W.DEV_SEL]! >>> 0;
      case `${COMMON.DEVICE_FEATURE}:4`: {
        const sel = this.w[W.DEV_SEL]!;
        return sel === 0 ? this.w[W.DEV_FEAT_LO]! >>> 0 : sel === 1 ? this.w[W.DEV_FEAT_HI]! >>> 0 : 0;
      }
      case `${COMMON.DRIVER_FEATURE_SELECT}:4`: return this.w[W.DRV_SEL]! >>> 0;
      case `${COMMON.DRIVER_FEATURE}:4`: {
        const sel = this.w[W.DRV_SEL]!;
        return sel === 0 ? this.w[W.DRV_FEAT_LO]! >>> 0 : sel === 1 ? this.w[W.DRV_FEAT_HI]! >>> 0 : 0;
      }
      case `${COMMON.CONFIG_MSIX_VECTOR}:2`: return this.w[W.CONFIG_VECTOR]!;
      case `${COMMON.NUM_QUEUES}:2`: return this.numQueues;
      case `${COMMON.DEVICE_STATUS}:1`: return this.status & 0xff;
      case `${COMMON.CONFIG_GENERATION}:1`: return Atomics.load(this.w, W.GENERATION) & 0xff;
      case `${COMMON.QUEUE_SELECT}:2`: return this.w[W.QUEUE_SEL]!;
      // An absent queue reads size 0: "not available" (§4.1.4.3.2).
      case `${COMMON.QUEUE_SIZE}:2`: return q(Q.SIZE);
      case `${COMMON.QUEUE_MSIX_VECTOR}:2`: return qb === undefined ? NO_VECTOR : q(Q.VECTOR);
      case `${COMMON.QUEUE_ENABLE}:2`: return q(Q.ENABLE);
      // Every queue notifies at offset 0 of the notify region (multiplier 0): one ioeventfd per queue, matched on the queue index.
      case `${COMMON.QUEUE_NOTIFY_OFF}:2`: return 0;
      case `${COMMON.QUEUE_DESC}:4`: return q(Q.DESC_LO);
      case `${COMMON.QUEUE_DESC + 4}:4`: return q(Q.DESC_HI);
      case `${COMMON.QUEUE_DRIVER}:4`: return q(Q.DRIVER_LO);
      case `${COMMON.QUEUE_DRIVER + 4}:4`: return q(Q.DRIVER_HI);
      case `${COMMON.QUEUE_DEVICE}:4`: return q(Q.DEVICE_LO);
      case `${COMMON.QUEUE_DEVICE + 4}:4`: return q(Q.DEVICE_HI);
      default: return 0;
    }
  }

  /** Writes a register; read-only ones, unknown offsets and wrong widths are ignored. */
  write(offset: number, len: number, value: number, events: CommonConfigEvents = {}): void {
    const status = this.status;
    const qb = this.queueBase();
    // Queue registers are frozen once the queue is enabled or the driver is running (§4.1.4.3.2).
    const queueWritable = qb !== undefined && this.w[qb + Q.ENABLE] === 0 && (status & STATUS.DRIVER_OK) === 0;
    const setQueue = (slot: number): void => { if (queueWritable) this.w[qb + slot] = value | 0; };
    const vectorOk = (v: number): number => (v === NO_VECTOR || v < this.w[W.VECTORS]! ? v : NO_VECTOR);
    switch (`${offset}:${len}`) {
      case `${COMMON.DEVICE_FEATURE_SELECT}:4`: this.w[W.DEV_SEL] = value | 0; return;
      case `${COMMON.DRIVER_FEATURE_SELECT}:4`: this.w[W.DRV_SEL] = value | 0; return;
      case `${COMMON.DRIVER_FEATURE}:4`: {
        const sel = this.w[W.DRV_SEL]!;
        if ((status & STATUS.FEATURES_OK) === 0 && (sel === 0 || sel === 1)) this.w[sel === 0 ? W.DRV_FEAT_LO : W.DRV_FEAT_HI] = value | 0;
        return;
      }
      case `${COMMON.CONFIG_MSIX_VECTOR}:2`: this.w[W.CONFIG_VECTOR] = vectorOk(value); return;
      case `${COMMON.DEVICE_STATUS}:1`: this.writeStatus(value & 0xff, events); return;
      case `${COMMON.QUEUE_SELECT}:2`: this.w[W.QUEUE_SEL] = value; return;
      case `${COMMON.QUEUE_SIZE}:2`:
        // A power of 2 no larger than the maximum; anything else leaves the size as it was.
        if (queueWritable && value >= 1 && (value & (value - 1)) === 0 && value <= this.w[qb + Q.MAX]!) this.w[qb + Q.SIZE] = value;
        return;
      case `${COMMON.QUEUE_MSIX_VECTOR}:2`: if (qb !== undefined) this.w[qb + Q.VECTOR] = vectorOk(value); return;
      case `${COMMON.QUEUE_ENABLE}:2`: if (value === 1) setQueue(Q.ENABLE); return;
      case `${COMMON.QUEUE_DESC}:4`: setQueue(Q.DESC_LO); return;
      case `${COMMON.QUEUE_DESC + 4}:4`: setQueue(Q.DESC_HI); return;
      case `${COMMON.QUEUE_DRIVER}:4`: setQueue(Q.DRIVER_LO); return;
      case `${COMMON.QUEUE_DRIVER + 4}:4`: setQueue(Q.DRIVER_HI); return;
      case `${COMMON.QUEUE_DEVICE}:4`: setQueue(Q.DEVICE_LO); return;
      case `${COMMON.QUEUE_DEVICE + 4}:4`: setQueue(Q.DEVICE_HI); return;
      default: return;
    }
  }

  private writeStatus(value: number, events: CommonConfigEvents): void {
    const old = this.status;
    if (value === 0) {
      this.resetState();
      Atomics.add(this.w, W.GENERATION, 1);
      events.reset?.();
      return;
    }
    // The driver may only add bits (§3.1.1); clearing any needs a reset.
    let next = (old | value) & ~STATUS.DEVICE_NEEDS_RESET | (old & STATUS.DEVICE_NEEDS_RESET);
    if ((value & STATUS.FEATURES_OK) && !(old & STATUS.FEATURES_OK)) {
      const driver = this.driverFeatures;
      // Accept only a subset of what we offered that includes VERSION_1 (no legacy drivers).
      if ((driver & ~this.deviceFeatures) !== 0n || (driver & VIRTIO_F_VERSION_1) === 0n) next &= ~STATUS.FEATURES_OK;
    }
    if ((value & STATUS.DRIVER_OK) && !(old & STATUS.DRIVER_OK)) {
      if (!(next & STATUS.FEATURES_OK)) {
        next = (next & ~STATUS.DRIVER_OK) | STATUS.DEVICE_NEEDS_RESET;
      } else {
        Atomics.store(this.w, W.STATUS, next);
        events.activate?.(this.queueLayouts(), this.driverFeatures);
        return;
      }
    }
    Atomics.store(this.w, W.STATUS, next);
  }

  /** The structure as MMIO (offset 0 = device_feature_select). */
  device(events: CommonConfigEvents = {}): BusDevice {
    return {
      read: (offset, data) => {
        const v = this.read(offset, data.length);
        for (let i = 0; i < data.length; i++) data[i] = Math.floor(v / 2 ** (8 * i)) & 0xff;
      },
      write: (offset, data) => {
        let v = 0;
        for (let i = Math.min(data.length, 4) - 1; i >= 0; i--) v = v * 256 + data[i]!;
        this.write(offset, data.length, v, events);
      },
    };
  }
}
