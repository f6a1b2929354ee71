// The split virtqueue against well-formed and hostile rings: unit cases, a property test over
// arbitrary rings, and a bounded fuzz loop of 100 000 random rings.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import { QueueError, SplitQueue, VIRTQ_DESC_F, type QueueFeatures } from '../../../src/devices/virtio/split-queue.js';

const { NEXT, WRITE, INDIRECT } = VIRTQ_DESC_F;
const MEM = 0x10000;
const layout = { size: 8, desc: 0x1000, avail: 0x2000, used: 0x3000 };
const both: QueueFeatures = { indirect: true, eventIdx: true };

function setup(features: QueueFeatures = both): { m: GuestMemory; q: SplitQueue; desc: (i: number, addr: number | bigint, len: number, flags: number, next?: number, table?: number) => void; offer: (...heads: number[]) => void } {
  const m = GuestMemory.anonymous(MEM);
  const q = new SplitQueue(m, layout, features);
  let availIdx = 0;
  return {
    m, q,
    desc: (i, addr, len, flags, next = 0, table = layout.desc) => {
      m.setU64(table + 16 * i, BigInt(addr));
      m.setU32(table + 16 * i + 8, len);
      m.setU16(table + 16 * i + 12, flags);
      m.setU16(table + 16 * i + 14, next);
    },
    offer: (...heads) => {
      for (const h of heads) m.setU16(layout.avail + 4 + 2 * (availIdx++ % layout.size), h);
      m.setU16(layout.avail + 2, availIdx & 0xffff);
    },
  };
}

test('a chain: readable buffers, then writable ones; zero-length buffers dropped', () => {
  const { q, desc, offer } = setup();
  desc(3, 0x8000, 16, NEXT, 5);
  desc(5, 0x8100, 0, NEXT, 6);
  desc(6, 0x9000, 512, WRITE | NEXT, 7);
  desc(7, 0x9200, 1, WRITE);
  assert.equal(q.pop(), undefined);
  offer(3);
  assert.equal(q.pendingCount, 1);
  assert.deepEqual(q.pop(), { head: 3, readable: [{ gpa: 0x8000, len: 16 }], writable: [{ gpa: 0x9000, len: 512 }, { gpa: 0x9200, len: 1 }], writableBytes: 513 });
  assert.equal(q.pop(), undefined);
});

test('indirect tables are followed when negotiated; their misuse is an error', () => {
  const t = setup();
  t.desc(0, 0x4000, 48, INDIRECT);
  t.desc(0, 0x8000, 10, NEXT, 2, 0x4000);
  t.desc(2, 0x8100, 20, WRITE, 0, 0x4000);
  t.offer(0);
  assert.deepEqual(t.q.pop(), { head: 0, readable: [{ gpa: 0x8000, len: 10 }], writable: [{ gpa: 0x8100, len: 20 }], writableBytes: 20 });

  const cases: [string, (s: ReturnType<typeof setup>) => void, RegExp, QueueFeatures?][] = [
    ['not negotiated', (s) => s.desc(0, 0x4000, 16, INDIRECT), /without VIRTIO_F_INDIRECT_DESC/, { indirect: false, eventIdx: false }],
    ['INDIRECT|NEXT', (s) => s.desc(0, 0x4000, 16, INDIRECT | NEXT, 1), /both INDIRECT and NEXT/],
    ['odd length', (s) => s.desc(0, 0x4000, 17, INDIRECT), /multiple of 16/],
    ['empty table', (s) => s.desc(0, 0x4000, 0, INDIRECT), /multiple of 16/],
    ['table outside RAM', (s) => s.desc(0, MEM - 16, 32, INDIRECT), /outside guest memory/],
    ['nested', (s) => { s.desc(0, 0x4000, 16, INDIRECT); s.desc(0, 0x5000, 16, INDIRECT, 0, 0x4000); }, /another indirect/],
    ['loop inside', (s) => { s.desc(0, 0x4000, 32, INDIRECT); s.desc(0, 0x8000, 1, NEXT, 1, 0x4000); s.desc(1, 0x8000, 1, NEXT, 0, 0x4000); }, /loops/],
    ['next beyond table', (s) => { s.desc(0, 0x4000, 16, INDIRECT); s.desc(0, 0x8000, 1, NEXT, 1, 0x4000); }, /beyond its table/],
  ];
  for (const [what, build, message, features] of cases) {
    const s = setup(features);
    build(s);
    s.offer(0);
    assert.throws(() => s.q.pop(), (e: unknown) => e instanceof QueueError && message.test(e.message), what);
  }
});

test('hostile direct chains: loops, indexes and buffers out of range, order, a runaway avail index', () => {
  const cases: [string, (s: ReturnType<typeof setup>) => void, RegExp][] = [
    ['loop', (s) => { s.desc(0, 0x8000, 1, NEXT, 1); s.desc(1, 0x8000, 1, NEXT, 0); s.offer(0); }, /longer than the queue size/],
    ['self loop', (s) => { s.desc(0, 0x8000, 1, NEXT, 0); s.offer(0); }, /longer than the queue size/],
    ['head beyond size', (s) => s.offer(8), /index 8 is beyond/],
    ['next beyond size', (s) => { s.desc(0, 0x8000, 1, NEXT, 0xffff); s.offer(0); }, /index 65535/],
    ['buffer past the end of RAM', (s) => { s.desc(0, MEM - 8, 16, 0); s.offer(0); }, /outside guest memory/],
    ['buffer at 2^64-1', (s) => { s.desc(0, 0xffffffffffffffffn, 1, 0); s.offer(0); }, /outside guest memory/],
    ['readable after writable', (s) => { s.desc(0, 0x8000, 1, WRITE | NEXT, 1); s.desc(1, 0x8000, 1, 0); s.offer(0); }, /readable buffer follows/],
    ['avail index far ahead', (s) => s.m.setU16(layout.avail + 2, 9), /more than the queue size/],
  ];
  for (const [what, build, message] of cases) {
    const s = setup();
    build(s);
    assert.throws(() => s.q.pop(), (e: unknown) => e instanceof QueueError && message.test(e.message), what);
  }
});

test('queue set-up: size a power of 2, rings aligned and inside RAM', () => {
  const m = GuestMemory.anonymous(MEM);
  for (const bad of [{ ...layout, size: 0 }, { ...layout, size: 6 }, { ...layout, size: 65536 }, { ...layout, desc: 0x1008 },
    { ...layout, avail: 0x2001 }, { ...layout, used: 0x3002 }, { ...layout, used: MEM - 8 }, { ...layout, desc: -16 }]) {
    assert.throws(() => new SplitQueue(m, bad, both), QueueError, JSON.stringify(bad));
  }
});

test('used ring: elements then the index; avail_event follows what was consumed', () => {
  const { m, q, desc, offer } = setup();
  desc(2, 0x8000, 4, WRITE);
  offer(2, 2);
  q.pop();
  assert.equal(m.getU16(layout.used + 4 + 8 * 8), 1, 'avail_event');
  q.push(2, 4);
  assert.equal(m.getU32(layout.used + 4), 2);
  assert.equal(m.getU32(layout.used + 8), 4);
  assert.equal(m.getU16(layout.used + 2), 1);
  q.pop();
  q.push(2, 3);
  assert.equal(m.getU16(layout.used + 2), 2);
  assert.deepEqual(q.position, { nextAvail: 2, nextUsed: 2 });
});

test('interrupt suppression: used_event with EVENT_IDX, NO_INTERRUPT without', () => {
  const s = setup();
  s.desc(0, 0x8000, 1, WRITE);
  s.offer(0, 0, 0);
  // used_event = 1: the driver wants an interrupt once the used index passes 1.
  s.m.setU16(layout.avail + 4 + 2 * 8, 1);
  s.q.pop(); s.q.push(0, 1);
  assert.equal(s.q.needsInterrupt(), false, 'used idx 1 has not passed used_event 1');
  s.q.pop(); s.q.push(0, 1);
  assert.equal(s.q.needsInterrupt(), true, 'used idx 2 passed it');
  assert.equal(s.q.needsInterrupt(), false, 'nothing new');
  const n = setup({ indirect: false, eventIdx: false });
  n.desc(0, 0x8000, 1, WRITE);
  n.offer(0, 0);
  n.q.pop(); n.q.push(0, 1);
  assert.equal(n.q.needsInterrupt(), true);
  n.m.setU16(layout.avail, 1);
  n.q.pop(); n.q.push(0, 1);
  assert.equal(n.q.needsInterrupt(), false, 'NO_INTERRUPT');
});

/** Every buffer of a popped chain is inside RAM and the chain is bounded; anything else must be a QueueError. */
function checkPop(q: SplitQueue, m: GuestMemory): 'ok' | 'error' {
  try {
    const c = q.pop();
    if (c) {
      for (const b of [...c.readable, ...c.writable]) assert.ok(m.contains(b.gpa, b.len));
      assert.ok(c.readable.length + c.writable.length <= layout.size * 2);
    }
    return 'ok';
  } catch (e) {
    if (e instanceof QueueError) return 'error';
    throw e;
  }
}

test('property: arbitrary descriptor tables and rings never escape guest memory or throw anything but QueueError', () => {
  fc.assert(fc.property(fc.uint8Array({ minLength: 128, maxLength: 128 }), fc.uint8Array({ minLength: 64, maxLength: 64 }), fc.uint8Array({ minLength: 20, maxLength: 20 }), fc.boolean(), (table, indirect, avail, feat) => {
    const m = GuestMemory.anonymous(MEM);
    m.write(layout.desc, table);
    m.write(0x4000, indirect);
    m.write(layout.avail, avail);
    const q = new SplitQueue(m, layout, { indirect: feat, eventIdx: feat });
    for (let i = 0; i < 10; i++) checkPop(q, m);
  }), { numRuns: 2000 });
});

test('fuzz: 100 000 random rings (addresses biased into and around RAM), no host-side failure', () => {
  let seed = 0x12345678;
  const rand = (): number => { seed ^= seed << 13; seed ^= seed >>> 17; seed ^= seed << 5; return seed >>> 0; };
  const m = GuestMemory.anonymous(MEM);
  const outcomes = { ok: 0, error: 0 };
  const ROUNDS = 100_000;
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < layout.size; i++) {
      const table = rand() % 4 === 0 ? 0x4000 : layout.desc;
      const at = table + 16 * (rand() % 8);
      const addrs = [0x8000 + (rand() % 0x1000), MEM - (rand() % 64), rand() * 2 ** 20, 0x4000];
      m.setU64(at, BigInt(addrs[rand() % addrs.length]!));
      m.setU32(at + 8, rand() % 3 === 0 ? rand() : rand() % 4096);
      m.setU16(at + 12, rand() & 7);
      m.setU16(at + 14, rand() % 5 === 0 ? rand() & 0xffff : rand() % 10);
    }
    for (let i = 0; i < layout.size; i++) m.setU16(layout.avail + 4 + 2 * i, rand() % 10);
    m.setU16(layout.avail + 2, rand() % 12);
    const q = new SplitQueue(m, layout, { indirect: rand() % 2 === 0, eventIdx: rand() % 2 === 0 });
    outcomes[checkPop(q, m)]++;
  }
  console.log(`split queue fuzz: ${ROUNDS} random rings, ${outcomes.ok} popped or empty, ${outcomes.error} refused with QueueError, 0 host failures`);
  assert.equal(outcomes.ok + outcomes.error, ROUNDS);
  assert.ok(outcomes.ok > 1000 && outcomes.error > 1000, 'both outcomes exercised');
});
