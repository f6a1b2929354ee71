// virtio-blk requests against an in-memory disk: every request type, bad requests, read-only
// drives, and random requests that must never throw or touch bytes outside what they address.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GuestMemory } from '../../../../src/memory/guest-memory.js';
import type { DescriptorChain, GuestBuffer } from '../../../../src/devices/virtio/split-queue.js';
import { handleBlockRequest, MemoryDisk, SECTOR, VIRTIO_BLK_S, VIRTIO_BLK_T, type BlockBackend } from '../../../../src/devices/virtio/block/request.js';

const HDR = 0x1000;
const DATA = 0x2000;
const STATUS = 0x9000;

function header(m: GuestMemory, type: number, sector: bigint): GuestBuffer {
  m.setU32(HDR, type);
  m.setU32(HDR + 4, 0);
  m.setU64(HDR + 8, sector);
  return { gpa: HDR, len: 16 };
}

function chain(readable: GuestBuffer[], writable: GuestBuffer[]): DescriptorChain {
  return { head: 0, readable, writable, writableBytes: writable.reduce((n, b) => n + b.len, 0) };
}

const status: GuestBuffer = { gpa: STATUS, len: 1 };
const fresh = (): { m: GuestMemory; disk: MemoryDisk } => ({ m: GuestMemory.anonymous(0x10000), disk: new MemoryDisk(16 * SECTOR) });

test('write then read back, across buffer boundaries', () => {
  const { m, disk } = fresh();
  const dev = { backend: disk, serial: 'disk0' };
  m.write(DATA, Uint8Array.from({ length: 1024 }, (_, i) => i & 0xff));
  const w = handleBlockRequest(m, chain([header(m, VIRTIO_BLK_T.OUT, 3n), { gpa: DATA, len: 100 }, { gpa: DATA + 100, len: 924 }], [status]), dev);
  assert.deepEqual(w, { status: VIRTIO_BLK_S.OK, written: 1, type: VIRTIO_BLK_T.OUT, bytes: 1024 });
  assert.equal(m.getU8(STATUS), 0);
  assert.deepEqual(Array.from(disk.data.subarray(3 * SECTOR, 3 * SECTOR + 4)), [0, 1, 2, 3]);
  m.fill(0x5000, 1024, 0xee);
  const r = handleBlockRequest(m, chain([header(m, VIRTIO_BLK_T.IN, 3n)], [{ gpa: 0x5000, len: 7 }, { gpa: 0x5007, len: 1017 }, status]), dev);
  assert.deepEqual(r, { status: 0, written: 1025, type: VIRTIO_BLK_T.IN, bytes: 1024 });
  assert.deepEqual(m.read(0x5000, 1024), m.read(DATA, 1024));
});

test('the status may share the last buffer with the data', () => {
  const { m, disk } = fresh();
  disk.data.fill(7, 0, SECTOR);
  const r = handleBlockRequest(m, chain([header(m, VIRTIO_BLK_T.IN, 0n)], [{ gpa: 0x5000, len: SECTOR + 1 }]), { backend: disk, serial: '' });
  assert.equal(r.status, 0);
  assert.equal(m.getU8(0x5000 + SECTOR - 1), 7);
  assert.equal(m.getU8(0x5000 + SECTOR), 0, 'status byte after the data');
});

test('flush, get-id, discard and write-zeroes', () => {
  const { m, disk } = fresh();
  const dev = { backend: disk, serial: 'typevisor-serial-0123456789' };
  assert.equal(handleBlockRequest(m, chain([header(m, VIRTIO_BLK_T.FLUSH, 0n)], [status]), dev).status, 0);
  assert.equal(disk.flushes, 1);
  const id = handleBlockRequest(m, chain([header(m, VIRTIO_BLK_T.GET_ID, 0n)], [{ gpa: 0x5000, len: 20 }, status]), dev);
  assert.deepEqual(id, { status: 0, written: 21, type: VIRTIO_BLK_T.GET_ID, bytes: 0 });
  assert.equal(Buffer.from(m.read(0x5000, 20)).toString(), 'typevisor-serial-012');
  disk.data.fill(9);
  const seg = (at: number, sector: bigint, count: number, flags: number): void => { m.setU64(at, sector); m.setU32(at + 8, count); m.setU32(at + 12, flags); };
  seg(DATA, 1n, 2, 0);
  seg(DATA + 16, 10n, 1, 0);
  assert.equal(handleBlockRequest(m, chain([header(m, VIRTIO_BLK_T.DISCARD, 0n), { gpa: DATA, len: 32 }], [status]), dev).status, 0);
  assert.equal(disk.data[SECTOR], 0);
  assert.equal(disk.data[3 * SECTOR], 9);
  assert.equal(disk.data[10 * SECTOR], 0);
  seg(DATA, 5n, 1, 1);
  assert.equal(handleBlockRequest(m, chain([header(m, VIRTIO_BLK_T.WRITE_ZEROES, 0n), { gpa: DATA, len: 16 }], [status]), dev).status, 0);
  assert.equal(disk.data[5 * SECTOR + 511], 0);
  // One bad segment: nothing at all happens.
  disk.data.fill(9);
  seg(DATA, 0n, 1, 0);
  seg(DATA + 16, 16n, 1, 0);
  assert.equal(handleBlockRequest(m, chain([header(m, VIRTIO_BLK_T.DISCARD, 0n), { gpa: DATA, len: 32 }], [status]), dev).status, VIRTIO_BLK_S.IOERR);
  assert.equal(disk.data[0], 9, 'the first, valid segment was not applied either');
  seg(DATA, 0n, 1, 2);
  assert.equal(handleBlockRequest(m, chain([header(m, VIRTIO_BLK_T.WRITE_ZEROES, 0n), { gpa: DATA, len: 16 }], [status]), dev).status, VIRTIO_BLK_S.UNSUPP);
});

test('bad requests fail alone: beyond the end, partial sectors, no header, unknown type, read-only', () => {
  const { m, disk } = fresh();
  const dev = { backend: disk, serial: '' };
  // Built when run: every case writes its header at the same address.
  const cases: [string, () => DescriptorChain, number][] = [
    ['read past the end', () => chain([header(m, VIRTIO_BLK_T.IN, 15n)], [{ gpa: DATA, len: 1024 }, status]), VIRTIO_BLK_S.IOERR],
    ['write at sector 2^63', () => chain([header(m, VIRTIO_BLK_T.OUT, 2n ** 63n), { gpa: DATA, len: 512 }], [status]), VIRTIO_BLK_S.IOERR],
    ['write at sector 2^64-1', () => chain([header(m, VIRTIO_BLK_T.OUT, 2n ** 64n - 1n), { gpa: DATA, len: 512 }], [status]), VIRTIO_BLK_S.IOERR],
    ['half a sector', () => chain([header(m, VIRTIO_BLK_T.OUT, 0n), { gpa: DATA, len: 100 }], [status]), VIRTIO_BLK_S.IOERR],
    ['short header', () => chain([{ gpa: HDR, len: 8 }], [status]), VIRTIO_BLK_S.IOERR],
    ['no readable buffer', () => chain([], [{ gpa: DATA, len: 512 }, status]), VIRTIO_BLK_S.IOERR],
    ['unknown type', () => chain([header(m, 99, 0n)], [status]), VIRTIO_BLK_S.UNSUPP],
    ['too many segments', () => chain([header(m, VIRTIO_BLK_T.DISCARD, 0n), { gpa: DATA, len: 16 * 33 }], [status]), VIRTIO_BLK_S.IOERR],
  ];
  for (const [what, c, want] of cases) {
    const before = disk.data.slice();
    m.setU8(STATUS, 0xaa);
    assert.equal(handleBlockRequest(m, c(), dev).status, want, what);
    assert.equal(m.getU8(STATUS), want, `${what}: status byte`);
    assert.deepEqual(disk.data, before, `${what}: disk untouched`);
  }
  assert.deepEqual(handleBlockRequest(m, chain([header(m, VIRTIO_BLK_T.IN, 0n)], []), dev), { written: 0, type: -1, bytes: 0 }, 'no status byte: nothing to report');
  const ro = { backend: new MemoryDisk(16 * SECTOR, true), serial: '' };
  for (const t of [VIRTIO_BLK_T.OUT, VIRTIO_BLK_T.DISCARD, VIRTIO_BLK_T.WRITE_ZEROES]) {
    assert.equal(handleBlockRequest(m, chain([header(m, t, 0n), { gpa: DATA, len: 512 }], [status]), ro).status, VIRTIO_BLK_S.IOERR);
  }
  assert.equal(handleBlockRequest(m, chain([header(m, VIRTIO_BLK_T.IN, 0n)], [{ gpa: DATA, len: 512 }, status]), ro).status, 0, 'reads work');
});

test('a failing backend fails the request, not the device', () => {
  const { m } = fresh();
  const broken: BlockBackend = { sizeBytes: 16 * SECTOR, readOnly: false, read: () => { throw new Error('EIO'); }, write: () => { throw new Error('EIO'); }, flush: () => { throw new Error('EIO'); }, discard: () => undefined, writeZeroes: () => undefined };
  for (const t of [VIRTIO_BLK_T.IN, VIRTIO_BLK_T.FLUSH]) {
    assert.equal(handleBlockRequest(m, chain([header(m, t, 0n)], [{ gpa: DATA, len: 512 }, status]), { backend: broken, serial: '' }).status, VIRTIO_BLK_S.IOERR);
  }
});

test('property: random requests never throw, and a write changes only the sectors it names', () => {
  fc.assert(fc.property(fc.integer({ min: 0, max: 16 }), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), fc.array(fc.integer({ min: 0, max: 1500 }), { maxLength: 4 }), fc.array(fc.integer({ min: 0, max: 1500 }), { maxLength: 4 }), (type, sector, rLens, wLens) => {
    const { m, disk } = fresh();
    let at = DATA;
    const bufs = (lens: number[]): GuestBuffer[] => lens.map((len) => { const b = { gpa: at, len }; at += len; return b; });
    const readable = [header(m, type, sector), ...bufs(rLens)];
    const writable = bufs(wLens);
    const r = handleBlockRequest(m, chain(readable, writable), { backend: disk, serial: 'x' });
    if (writable.reduce((n, b) => n + b.len, 0) === 0) assert.equal(r.status, undefined);
    if (type === VIRTIO_BLK_T.OUT && r.status === 0) {
      const len = rLens.reduce((n, x) => n + x, 0);
      const first = Number(sector) * SECTOR;
      disk.data.subarray(0, first).forEach((b) => assert.equal(b, 0));
      disk.data.subarray(first + len).forEach((b) => assert.equal(b, 0));
    }
  }), { numRuns: 3000 });
});

test('fuzz: 100 000 random rings through the queue and the block device; the disk is never addressed out of range', async () => {
  const { SplitQueue, QueueError } = await import('../../../../src/devices/virtio/split-queue.js');
  const size = 16 * SECTOR;
  const total = (parts: readonly Uint8Array[]): number => parts.reduce((n, p) => n + p.length, 0);
  let outOfRange = 0;
  const inner = new MemoryDisk(size);
  const strict: BlockBackend = {
    sizeBytes: size, readOnly: false,
    read: (o, into) => { if (o < 0 || o + total(into) > size) outOfRange++; else inner.read(o, into); },
    write: (o, from) => { if (o < 0 || o + total(from) > size) outOfRange++; else inner.write(o, from); },
    flush: () => undefined,
    discard: (o, l) => { if (o < 0 || o + l > size) outOfRange++; },
    writeZeroes: (o, l) => { if (o < 0 || o + l > size) outOfRange++; },
  };
  const m = GuestMemory.anonymous(0x10000);
  const layout = { size: 8, desc: 0x1000, avail: 0x1800, used: 0x1c00 };
  let seed = 0x9e3779b9;
  const rand = (): number => { seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; return seed >>> 0; };
  const counts = { ok: 0, ioerr: 0, unsupp: 0, noStatus: 0, queueError: 0 };
  const ROUNDS = 100_000;
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < 8; i++) {
      const at = layout.desc + 16 * i;
      m.setU64(at, BigInt([0x2000 + (rand() % 32) * 0x200, 0x2000 + (rand() % 0x4000), 0xfff0 - (rand() % 32), rand() * 4096][rand() % 4]!));
      m.setU32(at + 8, rand() % 4 === 0 ? rand() : [16, 512, 1, 1024, 20, 32][rand() % 6]!);
      m.setU16(at + 12, rand() & 3);
      m.setU16(at + 14, rand() % 9);
    }
    // Headers somewhere in the data area: random type (biased to real ones) and sector.
    for (let h = 0x2000; h < 0x6000; h += 0x200) {
      m.setU32(h, [0, 1, 4, 8, 11, 13, rand()][rand() % 7]!);
      m.setU64(h + 8, BigInt(rand() % 20) + (rand() % 50 === 0 ? 2n ** 63n : 0n));
    }
    for (let i = 0; i < 8; i++) m.setU16(layout.avail + 4 + 2 * i, rand() % 9);
    m.setU16(layout.avail + 2, 1 + (rand() % 3));
    const q = new SplitQueue(m, layout, { indirect: false, eventIdx: false });
    try {
      const c = q.pop();
      if (!c) continue;
      const r = handleBlockRequest(m, c, { backend: strict, serial: 's' });
      if (r.status === undefined) counts.noStatus++;
      else if (r.status === VIRTIO_BLK_S.OK) counts.ok++;
      else if (r.status === VIRTIO_BLK_S.IOERR) counts.ioerr++;
      else counts.unsupp++;
      q.push(c.head, r.written);
    } catch (e) {
      if (!(e instanceof QueueError)) throw e;
      counts.queueError++;
    }
  }
  console.log(`virtio-blk fuzz: ${ROUNDS} random rings → ${JSON.stringify(counts)}; out-of-range backend calls: ${outOfRange}`);
  assert.equal(outOfRange, 0);
  assert.ok(counts.ok > 100 && counts.ioerr > 100 && counts.unsupp > 100 && counts.queueError > 100, JSON.stringify(counts));
});
