// Virtio 1.2 §5.5: the memory balloon. The host sets a target (num_pages) and interrupts the
// driver; the driver gives pages (inflateq, 4 KiB page frame numbers) and the VMM returns their
// backing to the host (the discard callback punches them out of guest RAM's memfd), takes pages
// back (deflateq: nothing to do, they fault in again as zeroes), reports statistics (statsq,
// tag/value pairs) and hands over free pages it is not using (reporting_vq, page-sized buffers).
// Every page number and buffer is checked against guest RAM before anything is discarded.
import type { GuestMemory } from '../../memory/guest-memory.js';
import type { VirtioPciState } from './pci-device.js';
import type { DescriptorChain } from './split-queue.js';
import { VirtioDeviceRuntime, type SignalMsi } from './device-runtime.js';
import { VIRTIO_F_INDIRECT_DESC } from './pci-common.js';

export const VIRTIO_BALLOON_F = { MUST_TELL_HOST: 1n << 0n, STATS_VQ: 1n << 1n, DEFLATE_ON_OOM: 1n << 2n, PAGE_REPORTING: 1n << 5n } as const;
export const BALLOON_FEATURES = VIRTIO_F_INDIRECT_DESC | VIRTIO_BALLOON_F.STATS_VQ | VIRTIO_BALLOON_F.DEFLATE_ON_OOM | VIRTIO_BALLOON_F.PAGE_REPORTING;

export interface BalloonOptions {
  /** The guest hands free memory back by itself (free page reporting, default true). */
  freePageReporting?: boolean;
  /** The guest may take pages back from the balloon when it runs out of memory (default true). */
  deflateOnOom?: boolean;
}

export function balloonFeatures(o: BalloonOptions = {}): bigint {
  let f = BALLOON_FEATURES;
  if (o.freePageReporting === false) f &= ~VIRTIO_BALLOON_F.PAGE_REPORTING;
  if (o.deflateOnOom === false) f &= ~VIRTIO_BALLOON_F.DEFLATE_ON_OOM;
  return f;
}
/** The balloon's unit: 4 KiB pages, whatever the guest's page size. */
export const BALLOON_PAGE = 4096;
/** num_pages u32, actual u32 (the driver writes `actual`). */
export const BALLOON_CONFIG_BYTES = 8;
export const BALLOON_CONFIG_WRITABLE: readonly [number, number] = [4, 8];
/** inflateq, deflateq, statsq, reporting_vq — as numbered when every feature is accepted. */
export const BALLOON_QUEUES = 4;

/** Statistic tags (§5.5.6.3) by name. */
export const BALLOON_STAT_TAGS: Record<number, string> = {
  0: 'swapIn', 1: 'swapOut', 2: 'majorFaults', 3: 'minorFaults', 4: 'freeMemory', 5: 'totalMemory', 6: 'availableMemory',
  7: 'diskCaches', 8: 'hugetlbAllocations', 9: 'hugetlbFailures',
};

/** Float64 slots of the metrics buffer: counters, then the latest value of each statistic tag. */
export const BALLOON_METRICS = { INFLATED_PAGES: 0, DEFLATED_PAGES: 1, REPORTED_BYTES: 2, DISCARDED_BYTES: 3, ERRORS: 4, STATS_UPDATES: 5, STATS: 6, SLOTS: 6 + 10 } as const;

export interface BalloonMetrics {
  targetMib: number;
  actualMib: number;
  inflatedPages: number;
  deflatedPages: number;
  reportedBytes: number;
  discardedBytes: number;
  errors: number;
  statsUpdates: number;
  /** The guest's latest statistics (bytes or counts), by name. */
  stats: Record<string, number>;
}

/** The shared configuration: the main thread sets the target, the driver writes `actual`. */
export function balloonConfig(): Uint8Array {
  return new Uint8Array(new SharedArrayBuffer(BALLOON_CONFIG_BYTES));
}

export function setBalloonTarget(config: Uint8Array, pages: number): void {
  new DataView(config.buffer, config.byteOffset).setUint32(0, pages, true);
}

export function readBalloonMetrics(config: Uint8Array, buffer: SharedArrayBuffer): BalloonMetrics {
  const v = new DataView(config.buffer, config.byteOffset);
  const m = new Float64Array(buffer);
  const stats: Record<string, number> = {};
  for (const [tag, name] of Object.entries(BALLOON_STAT_TAGS)) {
    const value = m[BALLOON_METRICS.STATS + Number(tag)]!;
    if (!Number.isNaN(value)) stats[name] = value;
  }
  return {
    targetMib: (v.getUint32(0, true) * BALLOON_PAGE) / 2 ** 20, actualMib: (v.getUint32(4, true) * BALLOON_PAGE) / 2 ** 20,
    inflatedPages: m[BALLOON_METRICS.INFLATED_PAGES]!, deflatedPages: m[BALLOON_METRICS.DEFLATED_PAGES]!,
    reportedBytes: m[BALLOON_METRICS.REPORTED_BYTES]!, discardedBytes: m[BALLOON_METRICS.DISCARDED_BYTES]!,
    errors: m[BALLOON_METRICS.ERRORS]!, statsUpdates: m[BALLOON_METRICS.STATS_UPDATES]!, stats,
  };
}

/** Gives guest RAM [gpa, gpa + len) back to the host; true if done. */
export type DiscardGuestMemory = (gpa: number, len: number) => boolean;

type Role = 'inflate' | 'deflate' | 'stats' | 'reporting';

export class BalloonDeviceRuntime extends VirtioDeviceRuntime {
  private readonly metrics: Float64Array;
  private roles: Role[] = [];
  private announcedTarget = 0;
  /** The stats buffer the driver gave us; returning it asks for fresh numbers. */
  private statsChain: DescriptorChain | undefined;

  constructor(memory: GuestMemory, state: VirtioPciState, private readonly discard: DiscardGuestMemory, metrics: SharedArrayBuffer, signalMsi: SignalMsi) {
    super(memory, state, signalMsi);
    this.metrics = new Float64Array(metrics);
    this.metrics.fill(NaN, BALLOON_METRICS.STATS, BALLOON_METRICS.STATS + 10);
  }

  /** The target changed (main thread) or it is time for new statistics: tell the driver. */
  override onControl(): void {
    super.onControl();
    const target = new DataView(this.state.deviceConfig.buffer, this.state.deviceConfig.byteOffset).getUint32(0, true);
    if (target !== this.announcedTarget && this.roles.length > 0) {
      this.announcedTarget = target;
      this.configChanged();
    }
    this.requestStats();
  }

  protected override started(features: bigint): void {
    // Queues are numbered by the features the driver took: stats and reporting only if accepted.
    this.roles = ['inflate', 'deflate'];
    if (features & VIRTIO_BALLOON_F.STATS_VQ) this.roles.push('stats');
    if (features & VIRTIO_BALLOON_F.PAGE_REPORTING) this.roles.push('reporting');
    this.announcedTarget = -1;
  }

  protected override stopped(): void {
    this.roles = [];
    this.statsChain = undefined;
  }

  protected handle(q: number, chain: DescriptorChain): number {
    switch (this.roles[q]) {
      case 'inflate': this.pages(chain, true); return 0;
      case 'deflate': this.pages(chain, false); return 0;
      case 'stats': this.stats(chain); return -1;
      case 'reporting': this.report(chain); return 0;
      default: this.metrics[BALLOON_METRICS.ERRORS]!++; return 0;
    }
  }

  /** Page frame numbers (u32 each) in the readable buffers; contiguous runs are discarded at once. */
  private pages(chain: DescriptorChain, inflate: boolean): void {
    let runStart = -1;
    let runPages = 0;
    const flush = (): void => {
      if (runPages > 0 && this.discard(runStart * BALLOON_PAGE, runPages * BALLOON_PAGE)) this.metrics[BALLOON_METRICS.DISCARDED_BYTES]! += runPages * BALLOON_PAGE;
      runPages = 0;
    };
    for (const b of chain.readable) {
      for (let at = 0; at + 4 <= b.len; at += 4) {
        const pfn = this.memory.getU32(b.gpa + at);
        if (!this.memory.contains(pfn * BALLOON_PAGE, BALLOON_PAGE)) { this.metrics[BALLOON_METRICS.ERRORS]!++; continue; }
        this.metrics[inflate ? BALLOON_METRICS.INFLATED_PAGES : BALLOON_METRICS.DEFLATED_PAGES]!++;
        if (!inflate) continue;
        if (runPages > 0 && pfn === runStart + runPages) { runPages++; continue; }
        flush();
        runStart = pfn;
        runPages = 1;
      }
    }
    flush();
  }

  /** struct virtio_balloon_stat { u16 tag; u64 val; } packed, 10 bytes each. */
  private stats(chain: DescriptorChain): void {
    for (const b of chain.readable) {
      for (let at = 0; at + 10 <= b.len; at += 10) {
        const tag = this.memory.getU16(b.gpa + at);
        const value = Number(this.memory.getU64(b.gpa + at + 2));
        if (tag in BALLOON_STAT_TAGS) this.metrics[BALLOON_METRICS.STATS + tag] = value;
      }
    }
    this.metrics[BALLOON_METRICS.STATS_UPDATES]!++;
    this.statsChain = chain;
  }

  /** Returns the held stats buffer: the driver refills it and hands it back. */
  private requestStats(): void {
    const q = this.roles.indexOf('stats');
    const chain = this.statsChain;
    if (q < 0 || !chain) return;
    this.statsChain = undefined;
    this.queue(q)?.push(chain.head, 0);
    this.returned(q);
  }

  /** Free page reporting: each writable buffer is a run of free guest pages. */
  private report(chain: DescriptorChain): void {
    for (const b of chain.writable) {
      const start = Math.ceil(b.gpa / BALLOON_PAGE) * BALLOON_PAGE;
      const end = Math.floor((b.gpa + b.len) / BALLOON_PAGE) * BALLOON_PAGE;
      if (end <= start) continue;
      this.metrics[BALLOON_METRICS.REPORTED_BYTES]! += end - start;
      if (this.discard(start, end - start)) this.metrics[BALLOON_METRICS.DISCARDED_BYTES]! += end - start;
    }
  }

  protected override ringBroken(): void {
    this.metrics[BALLOON_METRICS.ERRORS]!++;
  }
}
