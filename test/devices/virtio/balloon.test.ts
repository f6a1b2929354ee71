// virtio-balloon's I/O side: inflated pages are given back in contiguous runs, out-of-range page
// numbers are refused and counted, statistics are decoded and their buffer held for the next
// request, reported free pages are given back, a new target interrupts the driver — and a fuzz loop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as libc from '../../../src/sys/libc.js';
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import { createVirtioPciDevice, VIRTIO_ID } from '../../../src/devices/virtio/pci-device.js';
import { COMMON, VIRTIO_F_VERSION_1 } from '../../../src/devices/virtio/pci-common.js';
import {
  BALLOON_CONFIG_WRITABLE, BALLOON_FEATURES, BALLOON_METRICS, BalloonDeviceRuntime, balloonConfig, readBalloonMetrics, setBalloonTarget, VIRTIO_BALLOON_F,
} from '../../../src/devices/virtio/balloon.js';
import { virtioBarDevice } from '../../../src/devices/virtio/pci-bar.js';
import { BAR_LAYOUT } from '../../../src/devices/virtio/pci-device.js';
import { driveToOk, le, type TestQueue } from '../../helpers/virtio-driver.js';

const MEM = 0x400000;
const Q = (i: number): TestQueue => ({ size: 16, desc: 0x1000 + i * 0x1000, avail: 0x1800 + i * 0x1000, used: 0x1c00 + i * 0x1000 });

function setup(features = BALLOON_FEATURES | VIRTIO_F_VERSION_1) {
  const memory = GuestMemory.anonymous(MEM);
  const config = balloonConfig();
  const state = createVirtioPciDevice({
    deviceId: VIRTIO_ID.BALLOON, classCode: [0xff, 0, 0], features: BALLOON_FEATURES, queueMaxSizes: [16, 16, 16, 16], deviceConfig: config,
    deviceConfigWritable: BALLOON_CONFIG_WRITABLE, barAddress: 0xc000_0000,
  });
  const queues = (features & VIRTIO_BALLOON_F.PAGE_REPORTING) ? [Q(0), Q(1), Q(2), Q(3)] : [Q(0), Q(1), Q(2)];
  const fds = [0, ...queues].map(() => libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK));
  driveToOk(state, features, queues, { controlFd: fds[0]!, queueFds: fds.slice(1) });
  for (const fd of fds) libc.close(fd);
  const discarded: [number, number][] = [];
  const metrics = new SharedArrayBuffer(8 * BALLOON_METRICS.SLOTS);
  const irqs: number[] = [];
  const dev = new BalloonDeviceRuntime(memory, state, (gpa, len) => { discarded.push([gpa, len]); return true; }, metrics, (v) => irqs.push(v));
  dev.onControl();
  const d = new DataView(memory.bytes.buffer);
  const avail = new Map<number, number>();
  const offer = (q: TestQueue, bufs: [number, number, boolean][], first = 0): void => {
    bufs.forEach(([gpa, len, w], i) => {
      const at = q.desc + 16 * (first + i);
      d.setBigUint64(at, BigInt(gpa), true);
      d.setUint32(at + 8, len, true);
      d.setUint16(at + 12, (i < bufs.length - 1 ? 1 : 0) | (w ? 2 : 0), true);
      d.setUint16(at + 14, first + i + 1, true);
    });
    const idx = avail.get(q.avail) ?? 0;
    d.setUint16(q.avail + 4 + 2 * (idx % q.size), first, true);
    avail.set(q.avail, (idx + 1) & 0xffff);
    d.setUint16(q.avail + 2, (idx + 1) & 0xffff, true);
  };
  const usedIdx = (q: TestQueue): number => d.getUint16(q.used + 2, true);
  return { memory, dev, config, state, discarded, irqs, offer, usedIdx, d, metrics: () => readBalloonMetrics(config, metrics) };
}

const pfns = (list: number[]): Uint8Array => {
  const b = new Uint8Array(list.length * 4);
  list.forEach((p, i) => new DataView(b.buffer).setUint32(i * 4, p, true));
  return b;
};

test('inflate: pages given back in contiguous runs; out-of-range page numbers refused; deflate counted', () => {
  const t = setup();
  t.memory.write(0x20000, pfns([0x100, 0x101, 0x102, 0x200, 0x3ff, 0x400, 0xffffffff, 0x103]));
  t.offer(Q(0), [[0x20000, 32, false]]);
  t.dev.onNotify(0);
  assert.deepEqual(t.discarded, [[0x100000, 0x3000], [0x200000, 0x1000], [0x3ff000, 0x1000], [0x103000, 0x1000]]);
  assert.equal(t.usedIdx(Q(0)), 1, 'the buffer is returned');
  t.memory.write(0x21000, pfns([0x100, 0x101]));
  t.offer(Q(1), [[0x21000, 8, false]]);
  t.dev.onNotify(1);
  const m = t.metrics();
  assert.deepEqual([m.inflatedPages, m.deflatedPages, m.errors, m.discardedBytes], [6, 2, 2, 6 * 4096]);
  assert.equal(t.discarded.length, 4, 'deflating gives nothing back (the pages fault in again as zeroes)');
});

test('a new target interrupts the driver (config vector); the driver\'s actual is writable, num_pages is not', () => {
  const t = setup();
  const bar = virtioBarDevice({ state: t.state, controlFd: -1, queueFds: [], vectors: [] });
  bar.write(COMMON.CONFIG_MSIX_VECTOR, le(0, 2));
  setBalloonTarget(t.config, 2560);
  t.irqs.length = 0;
  t.dev.onControl();
  assert.deepEqual(t.irqs, [0], 'the configuration-change vector');
  assert.equal(t.metrics().targetMib, 10);
  t.dev.onControl();
  assert.deepEqual(t.irqs, [0], 'only once per change');
  bar.write(BAR_LAYOUT.DEVICE + 4, le(1280, 4));
  bar.write(BAR_LAYOUT.DEVICE, le(1, 4));
  const m = t.metrics();
  assert.equal(m.actualMib, 5);
  assert.equal(m.targetMib, 10, 'the guest cannot move the target');
});

test('statistics: tags decoded, unknown ones ignored, the buffer held and returned for the next round', () => {
  const t = setup();
  const stat = (tag: number, value: bigint): Uint8Array => {
    const b = new Uint8Array(10);
    const v = new DataView(b.buffer);
    v.setUint16(0, tag, true);
    v.setBigUint64(2, value, true);
    return b;
  };
  t.memory.write(0x30000, Buffer.concat([stat(4, 123456789n), stat(5, 268435456n), stat(99, 1n), stat(6, 200000000n)]));
  t.offer(Q(2), [[0x30000, 40, false]]);
  t.dev.onNotify(2);
  assert.equal(t.usedIdx(Q(2)), 0, 'held until more are wanted');
  const m = t.metrics();
  assert.deepEqual(m.stats, { freeMemory: 123456789, totalMemory: 268435456, availableMemory: 200000000 });
  assert.equal(m.statsUpdates, 1);
  t.dev.onControl();
  assert.equal(t.usedIdx(Q(2)), 1, 'returned: the driver refills it');
});

test('free page reporting gives reported ranges back, page-aligned; without the feature the queue is not there', () => {
  const t = setup();
  t.offer(Q(3), [[0x200000, 0x200000, true]]);
  t.dev.onNotify(3);
  assert.deepEqual(t.discarded, [[0x200000, 0x200000]]);
  assert.equal(t.metrics().reportedBytes, 0x200000);
  const plain = setup(BALLOON_FEATURES & ~VIRTIO_BALLOON_F.PAGE_REPORTING | VIRTIO_F_VERSION_1);
  plain.offer(Q(2), [[0x30000, 10, false]]);
  plain.dev.onNotify(2);
  assert.equal(plain.metrics().statsUpdates, 1, 'queue 2 is the stats queue');
});

test('fuzz: 100 000 random inflate/report buffers never discard outside guest RAM', () => {
  const t = setup();
  let seed = 7;
  const rand = (n: number): number => { seed = (seed + 0x6d2b79f5) | 0; let x = Math.imul(seed ^ (seed >>> 15), 1 | seed); x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x; return Math.floor((((x ^ (x >>> 14)) >>> 0) / 2 ** 32) * n); };
  for (let i = 0; i < 100_000; i++) {
    const q = rand(2) === 0 ? 0 : 3;
    if (q === 0) {
      t.memory.write(0x20000, pfns(Array.from({ length: 1 + rand(8) }, () => (rand(4) === 0 ? rand(2 ** 32) : rand(MEM / 4096 + 4)))));
      t.offer(Q(0), [[0x20000, 4 * (1 + rand(8)), false]]);
    } else {
      const gpa = rand(MEM);
      t.offer(Q(3), [[gpa, rand(MEM - gpa) + 1, true]]);
    }
    t.dev.onNotify(q);
  }
  for (const [gpa, len] of t.discarded) assert.ok(gpa >= 0 && len > 0 && gpa + len <= MEM && gpa % 4096 === 0 && len % 4096 === 0, `${gpa}+${len}`);
  console.log(`# balloon fuzz: 100000 buffers, ${t.discarded.length} discards, metrics ${JSON.stringify(t.metrics())}`);
});
