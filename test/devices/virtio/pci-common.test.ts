// The virtio-pci common configuration: the driver's set-up sequence as Linux runs it, and the ways a
// driver can get it wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { COMMON, NO_VECTOR, STATUS, VIRTIO_F_EVENT_IDX, VIRTIO_F_VERSION_1, VirtioPciCommonConfig } from '../../../src/devices/virtio/pci-common.js';
import type { QueueLayout } from '../../../src/devices/virtio/split-queue.js';

const FEATURES = VIRTIO_F_EVENT_IDX | (1n << 6n);

function device(): { c: VirtioPciCommonConfig; activated: { queues: (QueueLayout | undefined)[]; features: bigint }[]; resets: number[] } {
  const c = VirtioPciCommonConfig.create(FEATURES, [256, 128], 3);
  return { c, activated: [], resets: [] };
}

test('Linux\'s sequence: reset, ACK, DRIVER, features, FEATURES_OK, queues, DRIVER_OK → activate', () => {
  const { c, activated, resets } = device();
  const ev = { activate: (queues: (QueueLayout | undefined)[], features: bigint) => activated.push({ queues, features }), reset: () => resets.push(1) };
  c.write(COMMON.DEVICE_STATUS, 1, 0, ev);
  assert.equal(resets.length, 1);
  c.write(COMMON.DEVICE_STATUS, 1, STATUS.ACKNOWLEDGE, ev);
  c.write(COMMON.DEVICE_STATUS, 1, STATUS.ACKNOWLEDGE | STATUS.DRIVER, ev);
  c.write(COMMON.DEVICE_FEATURE_SELECT, 4, 0);
  const lo = c.read(COMMON.DEVICE_FEATURE, 4);
  c.write(COMMON.DEVICE_FEATURE_SELECT, 4, 1);
  const hi = c.read(COMMON.DEVICE_FEATURE, 4);
  assert.equal((BigInt(hi) << 32n) | BigInt(lo), FEATURES | VIRTIO_F_VERSION_1);
  c.write(COMMON.DRIVER_FEATURE_SELECT, 4, 0);
  c.write(COMMON.DRIVER_FEATURE, 4, Number(VIRTIO_F_EVENT_IDX));
  c.write(COMMON.DRIVER_FEATURE_SELECT, 4, 1);
  c.write(COMMON.DRIVER_FEATURE, 4, 1);
  c.write(COMMON.DEVICE_STATUS, 1, STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK, ev);
  assert.ok(c.read(COMMON.DEVICE_STATUS, 1) & STATUS.FEATURES_OK, 'features accepted');
  assert.equal(c.read(COMMON.NUM_QUEUES, 2), 2);
  c.write(COMMON.QUEUE_SELECT, 2, 0);
  assert.equal(c.read(COMMON.QUEUE_SIZE, 2), 256);
  c.write(COMMON.QUEUE_SIZE, 2, 64);
  c.write(COMMON.QUEUE_MSIX_VECTOR, 2, 1);
  assert.equal(c.read(COMMON.QUEUE_MSIX_VECTOR, 2), 1);
  c.write(COMMON.QUEUE_DESC, 4, 0x10000);
  c.write(COMMON.QUEUE_DESC + 4, 4, 1);
  c.write(COMMON.QUEUE_DRIVER, 4, 0x11000);
  c.write(COMMON.QUEUE_DEVICE, 4, 0x12000);
  c.write(COMMON.QUEUE_ENABLE, 2, 1);
  c.write(COMMON.QUEUE_SIZE, 2, 32);
  assert.equal(c.read(COMMON.QUEUE_SIZE, 2), 64, 'frozen once enabled');
  c.write(COMMON.CONFIG_MSIX_VECTOR, 2, 0);
  c.write(COMMON.DEVICE_STATUS, 1, STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK | STATUS.DRIVER_OK, ev);
  assert.equal(activated.length, 1);
  assert.deepEqual(activated[0]!.queues, [{ size: 64, desc: 0x1_0001_0000, avail: 0x11000, used: 0x12000 }, undefined]);
  assert.equal(activated[0]!.features, VIRTIO_F_EVENT_IDX | VIRTIO_F_VERSION_1);
  assert.equal(c.vector(0), 1);
  assert.equal(c.vector(-1), 0);
  const gen = c.read(COMMON.CONFIG_GENERATION, 1);
  c.write(COMMON.DEVICE_STATUS, 1, 0, ev);
  assert.equal(c.read(COMMON.DEVICE_STATUS, 1), 0);
  assert.equal(c.read(COMMON.QUEUE_ENABLE, 2), 0, 'reset forgets the queues');
  assert.equal(c.vector(0), NO_VECTOR);
  assert.equal(c.read(COMMON.CONFIG_GENERATION, 1), (gen + 1) & 0xff);
  assert.equal(resets.length, 2);
});

test('features the device did not offer, or no VERSION_1: FEATURES_OK does not stick; DRIVER_OK then means NEEDS_RESET', () => {
  for (const [lo, hi] of [[Number(1n << 7n), 1], [0, 0]] as const) {
    const { c } = device();
    const activated: unknown[] = [];
    c.write(COMMON.DRIVER_FEATURE_SELECT, 4, 0);
    c.write(COMMON.DRIVER_FEATURE, 4, lo);
    c.write(COMMON.DRIVER_FEATURE_SELECT, 4, 1);
    c.write(COMMON.DRIVER_FEATURE, 4, hi);
    c.write(COMMON.DEVICE_STATUS, 1, STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK);
    assert.equal(c.read(COMMON.DEVICE_STATUS, 1) & STATUS.FEATURES_OK, 0);
    c.write(COMMON.DEVICE_STATUS, 1, STATUS.DRIVER_OK, { activate: () => activated.push(1) });
    assert.equal(activated.length, 0);
    assert.ok(c.read(COMMON.DEVICE_STATUS, 1) & STATUS.DEVICE_NEEDS_RESET);
  }
});

test('bad queue set-up is refused quietly: absent queues, sizes, vectors beyond the table, writes after FEATURES_OK', () => {
  const { c } = device();
  c.write(COMMON.QUEUE_SELECT, 2, 7);
  assert.equal(c.read(COMMON.QUEUE_SIZE, 2), 0, 'absent queue');
  c.write(COMMON.QUEUE_ENABLE, 2, 1);
  assert.equal(c.read(COMMON.QUEUE_ENABLE, 2), 0);
  assert.equal(c.read(COMMON.QUEUE_MSIX_VECTOR, 2), NO_VECTOR);
  c.write(COMMON.QUEUE_SELECT, 2, 1);
  for (const bad of [0, 3, 256, 0xffff]) c.write(COMMON.QUEUE_SIZE, 2, bad);
  assert.equal(c.read(COMMON.QUEUE_SIZE, 2), 128);
  c.write(COMMON.QUEUE_MSIX_VECTOR, 2, 3);
  assert.equal(c.read(COMMON.QUEUE_MSIX_VECTOR, 2), NO_VECTOR, 'only 3 vectors (0-2)');
  c.write(COMMON.QUEUE_SIZE, 4, 16);
  assert.equal(c.read(COMMON.QUEUE_SIZE, 2), 128, 'wrong width ignored');
  c.write(COMMON.DEVICE_FEATURE, 4, 0);
  c.write(COMMON.DRIVER_FEATURE_SELECT, 4, 1);
  c.write(COMMON.DRIVER_FEATURE, 4, 1);
  c.write(COMMON.DEVICE_STATUS, 1, STATUS.FEATURES_OK);
  c.write(COMMON.DRIVER_FEATURE, 4, 0);
  assert.equal(c.read(COMMON.DRIVER_FEATURE, 4), 1, 'features are fixed after FEATURES_OK');
  c.write(COMMON.DEVICE_FEATURE_SELECT, 4, 1);
  assert.equal(c.read(COMMON.DEVICE_FEATURE, 4), Number((FEATURES | VIRTIO_F_VERSION_1) >> 32n), 'device features are read-only');
  c.write(COMMON.DEVICE_FEATURE_SELECT, 4, 2);
  assert.equal(c.read(COMMON.DEVICE_FEATURE, 4), 0, 'no features beyond bit 63');
});

test('the shared state serves a second view (another vCPU thread) and the device can ask for a reset', () => {
  const { c } = device();
  const other = new VirtioPciCommonConfig(c.state);
  other.write(COMMON.DEVICE_STATUS, 1, STATUS.ACKNOWLEDGE);
  assert.equal(c.status, STATUS.ACKNOWLEDGE);
  c.setNeedsReset();
  assert.ok(other.read(COMMON.DEVICE_STATUS, 1) & STATUS.DEVICE_NEEDS_RESET);
  other.write(COMMON.DEVICE_STATUS, 1, STATUS.DRIVER);
  assert.ok(c.status & STATUS.DEVICE_NEEDS_RESET, 'only a reset clears it');
});

test('property: random register traffic never throws and never enables a queue with a bad size', () => {
  fc.assert(fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 0x40 }), fc.constantFrom(1, 2, 4, 8), fc.integer({ min: 0, max: 0xffffffff })), { maxLength: 60 }), (ops) => {
    const { c } = device();
    const layouts: (QueueLayout | undefined)[][] = [];
    const dev = c.device({ activate: (q) => layouts.push(q) });
    for (const [offset, len, value] of ops) {
      const d = new Uint8Array(len);
      for (let i = 0; i < Math.min(len, 4); i++) d[i] = (value >>> (8 * i)) & 0xff;
      dev.write(offset, d);
      dev.read(offset, d);
    }
    for (const q of layouts.flat()) if (q) assert.ok(q.size >= 1 && q.size <= 256 && (q.size & (q.size - 1)) === 0);
  }), { numRuns: 5000 });
});
