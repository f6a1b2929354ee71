// virtio-net's I/O side against a fake backend: transmit gathers a frame (header first) from the
// guest's buffers, receive spreads frames over mergeable buffers with num_buffers set, waits for
// buffers without losing a frame, and drops what a hostile driver sends wrong — plus a fuzz loop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as libc from '../../../../src/sys/libc.js';
import { GuestMemory } from '../../../../src/memory/guest-memory.js';
import { createVirtioPciDevice, VIRTIO_ID } from '../../../../src/devices/virtio/pci-device.js';
import { VIRTIO_F_VERSION_1 } from '../../../../src/devices/virtio/pci-common.js';
import { NET_FEATURES, netConfig, parseMac, formatMac, randomMac, setLinkUp, VIRTIO_NET_F } from '../../../../src/devices/virtio/net/config.js';
import { MAX_FRAME_BYTES, NET_HDR_BYTES, NET_METRICS, NetDeviceRuntime, readNetMetrics, type NetBackend } from '../../../../src/devices/virtio/net/device.js';
import { driveToOk, type TestQueue } from '../../../helpers/virtio-driver.js';
import { RingDriver } from '../../../helpers/ring-driver.js';

const RXQ: TestQueue = { size: 8, desc: 0x1000, avail: 0x2000, used: 0x3000 };
const TXQ: TestQueue = { size: 8, desc: 0x4000, avail: 0x5000, used: 0x6000 };

class FakeBackend implements NetBackend {
  sent: Uint8Array[] = [];
  waiting: Uint8Array[] = [];
  interest = false;
  features = 0n;
  refuse = false;
  send(parts: readonly Uint8Array[]): boolean {
    if (this.refuse) return false;
    this.sent.push(Buffer.concat(parts));
    return true;
  }
  receive(into: Uint8Array): number {
    const f = this.waiting.shift();
    if (!f) return -1;
    into.set(f);
    return f.length;
  }
  setReceiveInterest(wanted: boolean): void { this.interest = wanted; }
  setGuestFeatures(features: bigint): void { this.features = features; }
}

function setup(features = NET_FEATURES | VIRTIO_F_VERSION_1) {
  const memory = GuestMemory.anonymous(0x40000);
  const state = createVirtioPciDevice({ deviceId: VIRTIO_ID.NET, classCode: [2, 0, 0], features: NET_FEATURES, queueMaxSizes: [8, 8], deviceConfig: netConfig(parseMac('52:54:00:12:34:56')!), barAddress: 0xc000_0000 });
  const fds = [libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK), libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK), libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK)];
  driveToOk(state, features, [RXQ, TXQ], { controlFd: fds[0]!, queueFds: [fds[1]!, fds[2]!] });
  for (const fd of fds) libc.close(fd);
  const backend = new FakeBackend();
  const metrics = new SharedArrayBuffer(8 * NET_METRICS.SLOTS);
  const irqs: number[] = [];
  const dev = new NetDeviceRuntime(memory, state, backend, metrics, (vector) => irqs.push(vector));
  dev.onControl();
  const d = new DataView(memory.bytes.buffer);
  const drivers = new Map([RXQ, TXQ].map((q) => [q, new RingDriver(memory, q)]));
  /** Makes a chain of (gpa, len, writable) descriptors available on queue `q` starting at descriptor `first`. */
  const offer = (q: TestQueue, first: number, bufs: [number, number, boolean][]): void => drivers.get(q)!.offer(first, bufs);
  const used = (q: TestQueue): { idx: number; entries: [number, number][] } => {
    const idx = d.getUint16(q.used + 2, true);
    return { idx, entries: Array.from({ length: idx }, (_, i) => [d.getUint32(q.used + 4 + 8 * i, true), d.getUint32(q.used + 8 + 8 * i, true)]) };
  };
  return { memory, dev, backend, metrics: () => readNetMetrics(metrics), offer, used, irqs, d };
}

test('MAC addresses: parsed, formatted, random ones locally administered unicast', () => {
  assert.equal(formatMac(parseMac('52:54:00:AB:cd:ef')!), '52:54:00:ab:cd:ef');
  assert.equal(parseMac('01:00:5e:00:00:01'), undefined, 'multicast refused');
  assert.equal(parseMac('52:54:00:ab:cd'), undefined);
  const r = randomMac(() => Uint8Array.from([0xff, 1, 2, 3, 4, 5]));
  assert.equal(formatMac(r), 'fe:01:02:03:04:05');
  assert.deepEqual([...netConfig(parseMac('52:54:00:12:34:56')!)], [0x52, 0x54, 0, 0x12, 0x34, 0x56, 1, 0], 'MAC, then link up');
});

test('transmit: header and frame gathered from the chain; malformed chains dropped and counted', () => {
  const t = setup();
  assert.equal(t.backend.features & VIRTIO_NET_F.MRG_RXBUF, VIRTIO_NET_F.MRG_RXBUF, 'the backend learned the features');
  t.memory.write(0x10000, new Uint8Array(NET_HDR_BYTES).fill(0));
  t.memory.write(0x11000, Uint8Array.from({ length: 60 }, (_, i) => i));
  t.offer(TXQ, 0, [[0x10000, NET_HDR_BYTES, false], [0x11000, 60, false]]);
  t.dev.onNotify(1);
  assert.equal(t.backend.sent.length, 1);
  assert.equal(t.backend.sent[0]!.length, NET_HDR_BYTES + 60);
  assert.deepEqual([...t.backend.sent[0]!.subarray(NET_HDR_BYTES, NET_HDR_BYTES + 4)], [0, 1, 2, 3]);
  assert.deepEqual(t.used(TXQ).entries, [[0, 0]]);
  // A writable descriptor, a chain no longer than the header, one over the largest frame.
  t.offer(TXQ, 2, [[0x10000, NET_HDR_BYTES, false], [0x12000, 100, true]]);
  t.offer(TXQ, 4, [[0x10000, NET_HDR_BYTES, false]]);
  t.offer(TXQ, 5, [[0x10000, NET_HDR_BYTES, false], [0x20000, MAX_FRAME_BYTES, false]]);
  t.dev.onNotify(1);
  assert.equal(t.backend.sent.length, 1, 'nothing malformed reached the backend');
  assert.equal(t.used(TXQ).idx, 4, 'every chain returned');
  t.backend.refuse = true;
  t.offer(TXQ, 0, [[0x10000, NET_HDR_BYTES, false], [0x11000, 60, false]]);
  t.dev.onNotify(1);
  const m = t.metrics();
  assert.deepEqual([m.txPackets, m.txBytes, m.txDropped], [1, 60, 4]);
  assert.ok(t.irqs.includes(2), 'the TX vector was raised');
});

test('receive: a frame spread over mergeable buffers with num_buffers; frames wait for buffers, none lost', () => {
  const t = setup();
  const frame = (len: number, seed: number): Uint8Array => {
    const f = Uint8Array.from({ length: len }, (_, i) => (i * seed + 7) & 0xff);
    f.fill(0, 0, NET_HDR_BYTES);
    return f;
  };
  const big = frame(3000, 3);
  t.backend.waiting.push(big, frame(100, 5));
  // Two 2048-byte buffers only: the big frame takes both, the small one must wait.
  t.offer(RXQ, 0, [[0x10000, 2048, true]]);
  t.offer(RXQ, 1, [[0x11000, 2048, true]]);
  t.dev.onBackendReadable();
  let u = t.used(RXQ);
  assert.deepEqual(u.entries, [[0, 2048], [1, 3000 - 2048]]);
  const got = Buffer.concat([t.memory.read(0x10000, 2048), t.memory.read(0x11000, 3000 - 2048)]);
  assert.equal(got.readUInt16LE(10), 2, 'num_buffers = 2');
  assert.deepEqual(got.subarray(NET_HDR_BYTES), Buffer.from(big.subarray(NET_HDR_BYTES)));
  assert.equal(t.backend.interest, false, 'out of buffers: stop watching the backend');
  assert.equal(t.backend.waiting.length, 0, 'the small frame was read and is held, not dropped');
  t.offer(RXQ, 2, [[0x12000, 2048, true]]);
  t.dev.onNotify(0);
  u = t.used(RXQ);
  assert.deepEqual(u.entries[2], [2, 100]);
  assert.equal(Buffer.from(t.memory.read(0x12000, 12)).readUInt16LE(10), 1);
  assert.equal(t.backend.interest, true);
  const m = t.metrics();
  assert.deepEqual([m.rxPackets, m.rxBytes, m.rxDropped], [2, 3000 + 100 - 2 * NET_HDR_BYTES, 0]);
  // Not a receive buffer (readable): returned empty and counted; a runt frame is dropped.
  t.backend.waiting.push(frame(NET_HDR_BYTES, 1), frame(64, 9));
  t.offer(RXQ, 3, [[0x13000, 64, false]]);
  t.offer(RXQ, 4, [[0x14000, 2048, true]]);
  t.dev.onNotify(0);
  u = t.used(RXQ);
  assert.deepEqual(u.entries.slice(3), [[3, 0], [4, 64]]);
  assert.equal(t.metrics().errors, 1);
  assert.equal(t.metrics().rxDropped, 1);
});

test('receive without mergeable buffers: a frame must fit one chain, or it is dropped', () => {
  const t = setup((NET_FEATURES & ~VIRTIO_NET_F.MRG_RXBUF) | VIRTIO_F_VERSION_1);
  t.backend.waiting.push(new Uint8Array(3000), new Uint8Array(200));
  t.offer(RXQ, 0, [[0x10000, 1526, true]]);
  t.offer(RXQ, 1, [[0x11000, 1526, true]]);
  t.dev.onBackendReadable();
  assert.deepEqual(t.used(RXQ).entries, [[0, 0], [1, 200]]);
  assert.equal(t.metrics().rxDropped, 1);
});

test('fuzz: 100 000 random rings and frames through virtio-net; the device never throws or escapes guest memory', () => {
  let seed = 0x2545f491;
  const rand = (n: number): number => { seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; return (seed >>> 0) % n; };
  const counts = { runs: 0, tx: 0, rx: 0, broken: 0 };
  let t = setup();
  for (let i = 0; i < 100_000; i++) {
    if (i % 50 === 0) t = setup();
    t.dev.onNotify(0);
    const q = rand(2) === 0 ? RXQ : TXQ;
    if (rand(2) === 0) {
      // A well-formed chain of random size and direction (sometimes the wrong direction).
      const n = 1 + rand(3);
      t.offer(q, rand(5), Array.from({ length: n }, (_, k) => [0x10000 + k * 0x8000 + rand(0x1000), 1 + rand(0x6000), rand(5) === 0 ? q === TXQ : q === RXQ]));
    } else {
    // Random descriptors (addresses near and past the end of memory, lengths up to 128 KiB, any flags).
    for (let k = 0; k < 3; k++) {
      const at = q.desc + 16 * rand(8);
      t.d.setBigUint64(at, BigInt(rand(4) === 0 ? rand(0x50000) : 0x10000 + rand(0x20000)), true);
      t.d.setUint32(at + 8, rand(3) === 0 ? rand(0x20000) : rand(4096), true);
      t.d.setUint16(at + 12, rand(8), true);
      t.d.setUint16(at + 14, rand(10), true);
    }
    t.d.setUint16(q.avail + 4 + 2 * rand(8), rand(10), true);
    t.d.setUint16(q.avail + 2, (t.d.getUint16(q.avail + 2, true) + rand(3)) & 0xffff, true);
    }
    if (rand(2) === 0) t.backend.waiting.push(new Uint8Array(rand(MAX_FRAME_BYTES + 1)));
    if (q === RXQ) t.dev.onBackendReadable(); else t.dev.onNotify(1);
    for (const f of t.backend.sent) assert.ok(f.length > NET_HDR_BYTES && f.length <= MAX_FRAME_BYTES);
    counts.tx += t.backend.sent.length;
    t.backend.sent = [];
    counts.runs++;
    if (i % 50 === 49) { counts.rx += t.metrics().rxPackets; counts.broken += t.metrics().errors; }
  }
  console.log(`# virtio-net fuzz: ${JSON.stringify(counts)} — no host failure`);
  assert.equal(counts.runs, 100_000);
});

test('the backend is watched only while the device runs: readiness before DRIVER_OK, after a reset or with the link down switches it off', () => {
  const memory = GuestMemory.anonymous(0x40000);
  const state = createVirtioPciDevice({ deviceId: VIRTIO_ID.NET, classCode: [2, 0, 0], features: NET_FEATURES, queueMaxSizes: [8, 8], deviceConfig: netConfig(parseMac('52:54:00:12:34:56')!), barAddress: 0xc000_0000 });
  const backend = new FakeBackend();
  const dev = new NetDeviceRuntime(memory, state, backend, new SharedArrayBuffer(8 * NET_METRICS.SLOTS), () => {});
  dev.onControl();
  backend.interest = true; // as if something had switched it on
  backend.waiting.push(new Uint8Array(80));
  dev.onBackendReadable();
  assert.equal(backend.interest, false, 'a readable TAP of a device not started is not watched (no busy epoll loop)');
  assert.equal(backend.waiting.length, 1, 'and its frame is left for later');
  setLinkUp(state.deviceConfig, false);
  dev.onControl();
  setLinkUp(state.deviceConfig, true);
  dev.onControl();
  assert.equal(backend.interest, false, 'a link change before the driver starts does not switch it on');
  const t = setup();
  assert.equal(t.backend.interest, true, 'on once the driver started it');
  setLinkUp(t.dev['state'].deviceConfig, false);
  t.dev.onControl();
  t.backend.interest = true;
  t.dev.onBackendReadable();
  assert.equal(t.backend.interest, false, 'off again when readiness arrives while the link is down');
});

test('link status: down is announced (ISR config bit), frames from the host wait in the TAP; up delivers them', () => {
  const t = setup();
  const config = t.dev['state'].deviceConfig;
  setLinkUp(config, false);
  t.dev.onControl();
  assert.equal(new Int32Array(t.dev['state'].isr)[0]! & 2, 2, 'configuration change signalled');
  assert.equal(t.backend.interest, false, 'the TAP is not read while the link is down');
  t.backend.waiting.push(Uint8Array.from({ length: 80 }, (_, i) => (i < NET_HDR_BYTES ? 0 : i)));
  t.offer(RXQ, 0, [[0x10000, 2048, true]]);
  t.dev.onNotify(0);
  t.dev.onBackendReadable();
  assert.equal(t.used(RXQ).idx, 0, 'nothing delivered while down');
  setLinkUp(config, true);
  t.dev.onControl();
  assert.equal(t.used(RXQ).idx, 1, 'delivered once up');
  assert.equal(t.backend.interest, true);
});
