// virtio-vsock's I/O side against fake host streams, driven the way Linux's virtio_transport drives
// it (receive buffers of a 44-byte header descriptor and a 4 KiB payload descriptor; transmit
// chains of header then payload): connections both ways, credit both ways, shutdown and reset,
// what a hostile driver sends wrong — and a 100 000-packet fuzz loop.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { COMMON } from '../../../../src/devices/virtio/pci-common.js';
import { decodeHeader, encodeHeader, isGuestCid, SHUTDOWN_F, VSOCK_HDR_BYTES, VSOCK_OP, vsockConfig, type VsockHeader } from '../../../../src/devices/virtio/vsock/packet.js';
import { HOST_BUF_ALLOC, type VsockHost, type VsockHostStream } from '../../../../src/devices/virtio/vsock/device.js';
import { le } from '../../../helpers/virtio-driver.js';
import { EVQ, PAYLOAD, RX_BUFS as RX_BUFS_REF, RXQ as RXQ_REF, setupVsock, TX_BUFS, TXQ } from '../../../helpers/vsock-driver.js';

class FakeStream implements VsockHostStream {
  written: Buffer[] = [];
  incoming: Buffer[] = [];
  eof = false;
  closed = false;
  writeShut = false;
  /** Bytes write() takes per call (Infinity: all). */
  capacity = Infinity;
  gone = false;
  watching: [boolean, boolean] = [false, false];
  establishedPort: number | undefined;
  write(data: Uint8Array): number {
    if (this.gone || this.closed) return -1;
    const n = Math.min(data.length, this.capacity);
    this.written.push(Buffer.from(data.subarray(0, n)));
    return n;
  }
  read(into: Uint8Array): number {
    const c = this.incoming[0];
    if (!c) return this.eof ? 0 : -1;
    const n = Math.min(c.length, into.length);
    into.set(c.subarray(0, n));
    if (n === c.length) this.incoming.shift(); else this.incoming[0] = c.subarray(n);
    return n;
  }
  shutdownWrite(): void { this.writeShut = true; }
  readShut = false;
  shutdownRead(): void { this.readShut = true; }
  close(): void { this.closed = true; }
  watch(readable: boolean, writable: boolean): void { this.watching = [readable, writable]; }
  established(localPort: number): void { this.establishedPort = localPort; }
  get text(): string { return Buffer.concat(this.written).toString(); }
}

class FakeHost implements VsockHost {
  streams = new Map<number, FakeStream[]>();
  refuse = new Set<number>();
  connect(port: number): VsockHostStream | undefined {
    if (this.refuse.has(port)) return undefined;
    const s = new FakeStream();
    this.streams.set(port, [...(this.streams.get(port) ?? []), s]);
    return s;
  }
}

const setup = (onInterrupt?: (vector: number) => void): ReturnType<typeof setupVsock> & { host: FakeHost } => {
  const host = new FakeHost();
  return { ...setupVsock(host, onInterrupt), host };
};

test('header codec round-trips; guest CIDs exclude the reserved ones', () => {
  fc.assert(fc.property(fc.record({
    srcCid: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), dstCid: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), srcPort: fc.nat({ max: 2 ** 32 - 1 }), dstPort: fc.nat({ max: 2 ** 32 - 1 }),
    len: fc.nat({ max: 2 ** 32 - 1 }), type: fc.nat({ max: 0xffff }), op: fc.nat({ max: 0xffff }), flags: fc.nat({ max: 2 ** 32 - 1 }),
    bufAlloc: fc.nat({ max: 2 ** 32 - 1 }), fwdCnt: fc.nat({ max: 2 ** 32 - 1 }),
  }), (h) => { assert.deepEqual(decodeHeader(encodeHeader(h)), { ...h }); }));
  assert.deepEqual([0, 1, 2, 3, 0xfffffffe, 0xffffffff].map(isGuestCid), [false, false, false, true, true, false]);
  assert.deepEqual([...vsockConfig(3)], [3, 0, 0, 0, 0, 0, 0, 0]);
});

test('guest → host: REQUEST opens a host stream, RESPONSE follows, data flows both ways within credit', () => {
  const t = setup();
  t.giveRx(8);
  t.send({ op: VSOCK_OP.REQUEST, srcPort: 40000, dstPort: 1234, bufAlloc: 8192 });
  const stream = t.host.streams.get(1234)![0]!;
  let got = t.received();
  assert.equal(got.length, 1);
  assert.equal(got[0]!.h.op, VSOCK_OP.RESPONSE);
  assert.deepEqual([got[0]!.h.srcCid, got[0]!.h.dstCid, got[0]!.h.srcPort, got[0]!.h.dstPort], [2n, 3n, 1234, 40000]);
  assert.equal(got[0]!.h.bufAlloc, HOST_BUF_ALLOC);
  assert.deepEqual(stream.watching, [true, false], 'watched for data');
  t.send({ op: VSOCK_OP.RW }, Buffer.from('hello host'));
  assert.equal(stream.text, 'hello host');
  // 20 KiB from the host, but the guest gave 8 KiB of credit: two 4 KiB packets, then a wait.
  stream.incoming.push(Buffer.alloc(20 * 1024, 0x61));
  t.dev.streamReadable(stream);
  got = t.received();
  assert.deepEqual(got.map((p) => [p.h.op, p.h.len]), [[VSOCK_OP.RW, 4096], [VSOCK_OP.RW, 4096]]);
  assert.equal(got[0]!.h.fwdCnt, 10, 'our fwd_cnt tells the guest what the host took');
  assert.deepEqual(stream.watching, [false, false], 'not watched while it still has data');
  // The guest consumed 8 KiB and says so: the rest comes (buffers permitting).
  t.giveRx(8);
  t.send({ op: VSOCK_OP.CREDIT_UPDATE, fwdCnt: 8192 });
  got = t.received();
  assert.equal(got.reduce((n, p) => n + p.h.len, 0), 8192);
  t.send({ op: VSOCK_OP.CREDIT_UPDATE, fwdCnt: 16384 });
  got = t.received();
  assert.equal(got.reduce((n, p) => n + p.h.len, 0), 4096, 'the last 4 KiB');
  assert.deepEqual(stream.watching, [true, false], 'with credit left, a read found it empty: watched again');
  const m = t.metrics();
  assert.equal(m.guestConnections, 1);
  assert.equal(m.active, 1);
  assert.equal(m.txBytes, 10);
  assert.equal(m.rxBytes, 20 * 1024);
});

test('a refused port and packets for unknown connections get RST; RST is never answered', () => {
  const t = setup();
  t.giveRx(8);
  t.host.refuse.add(99);
  t.send({ op: VSOCK_OP.REQUEST, dstPort: 99 });
  t.send({ op: VSOCK_OP.RW, dstPort: 5, srcPort: 6 }, Buffer.from('x'));
  t.send({ op: VSOCK_OP.RST, dstPort: 7 });
  const got = t.received();
  assert.deepEqual(got.map((p) => [p.h.op, p.h.srcPort, p.h.dstPort]), [[VSOCK_OP.RST, 99, 40000], [VSOCK_OP.RST, 5, 6]]);
  assert.equal(t.metrics().resetsSent, 2);
});

test('host → guest: openFromHost sends REQUEST; RESPONSE establishes; data; guest RST closes the stream', () => {
  const t = setup();
  t.giveRx(8);
  const stream = new FakeStream();
  t.dev.openFromHost(stream, 52);
  const [req] = t.received();
  assert.equal(req!.h.op, VSOCK_OP.REQUEST);
  assert.equal(req!.h.dstPort, 52);
  const local = req!.h.srcPort;
  assert.ok(local >= 2 ** 30);
  assert.equal(stream.establishedPort, undefined);
  t.send({ op: VSOCK_OP.RESPONSE, srcPort: 52, dstPort: local, bufAlloc: 65536 });
  assert.equal(stream.establishedPort, local);
  stream.incoming.push(Buffer.from('ping'));
  t.dev.streamReadable(stream);
  const [data] = t.received();
  assert.equal(data!.payload.toString(), 'ping');
  t.send({ op: VSOCK_OP.RW, srcPort: 52, dstPort: local }, Buffer.from('pong'));
  assert.equal(stream.text, 'pong');
  t.send({ op: VSOCK_OP.RST, srcPort: 52, dstPort: local });
  assert.ok(stream.closed);
  assert.equal(t.dev.connectionCount, 0);
  assert.equal(t.metrics().hostConnections, 1);
  // A second connection gets another local port; a guest that never answers is reset after the time-out.
  const late = new FakeStream();
  t.dev.openFromHost(late, 52);
  assert.notEqual(t.received()[0]!.h.srcPort, local);
  t.advance(1000);
  t.dev.tick();
  assert.ok(!late.closed);
  t.advance(1500);
  t.dev.tick();
  assert.ok(late.closed, 'no answer within 2 s');
  assert.equal(t.received()[0]!.h.op, VSOCK_OP.RST);
});

test('a slow host side: data waits (within our credit), credit updates follow the drain, beyond credit is a reset', () => {
  const t = setup();
  t.giveRx(16);
  t.send({ op: VSOCK_OP.REQUEST });
  t.received();
  const stream = t.host.streams.get(1234)![0]!;
  stream.capacity = 0;
  const chunk = Buffer.alloc(64 * 1024, 0x62);
  for (let i = 0; i < 4; i++) t.send({ op: VSOCK_OP.RW }, chunk);
  assert.equal(stream.written.reduce((n, b) => n + b.length, 0), 0);
  assert.deepEqual(stream.watching, [true, true], 'watched for room');
  // The host drains: one credit update once half of our buffer is through.
  stream.capacity = Infinity;
  t.dev.streamWritable(stream);
  assert.equal(stream.written.reduce((n, b) => n + b.length, 0), 256 * 1024);
  const updates = t.received().filter((p) => p.h.op === VSOCK_OP.CREDIT_UPDATE);
  assert.equal(updates.length, 1);
  assert.equal(updates[0]!.h.fwdCnt, 256 * 1024);
  // Now a guest that ignores our credit.
  stream.capacity = 0;
  for (let i = 0; i < 4; i++) t.send({ op: VSOCK_OP.RW }, chunk);
  assert.ok(!stream.closed);
  t.send({ op: VSOCK_OP.RW }, Buffer.from('one byte too many'));
  assert.ok(stream.closed, 'reset');
  assert.equal(t.metrics().creditViolations, 1);
  assert.equal(t.received().at(-1)!.h.op, VSOCK_OP.RST);
});

test('guest data held for stuck host streams is capped across connections (32 MiB): the one that would exceed it is reset', () => {
  const t = setup();
  t.giveRx(32);
  const chunk = Buffer.alloc(64 * 1024, 0x63);
  for (let port = 1; port <= 129; port++) {
    t.send({ op: VSOCK_OP.REQUEST, srcPort: port });
    t.host.streams.get(1234)!.at(-1)!.capacity = 0;
    for (let i = 0; i < 4; i++) t.send({ op: VSOCK_OP.RW, srcPort: port }, chunk);
    t.received();
    t.giveRx(8);
  }
  const streams = t.host.streams.get(1234)!;
  assert.equal(streams.filter((s) => s.closed).length, 1, 'only the 129th connection');
  assert.ok(streams.at(-1)!.closed);
  assert.equal(t.metrics().creditViolations, 1);
  // Draining one frees room for others again.
  streams[0]!.capacity = Infinity;
  t.dev.streamWritable(streams[0]!);
  assert.equal(streams[0]!.written.reduce((n, b) => n + b.length, 0), 256 * 1024);
});

test('shutdown: SEND half-closes the host side after pending data; both closes with RST; host EOF is SHUTDOWN SEND', () => {
  const t = setup();
  t.giveRx(16);
  t.send({ op: VSOCK_OP.REQUEST });
  const stream = t.host.streams.get(1234)![0]!;
  stream.capacity = 3;
  t.send({ op: VSOCK_OP.RW }, Buffer.from('abcdefgh'));
  t.send({ op: VSOCK_OP.SHUTDOWN, flags: SHUTDOWN_F.SEND });
  assert.ok(!stream.writeShut, 'not before the pending bytes are through');
  stream.capacity = Infinity;
  t.dev.streamWritable(stream);
  assert.equal(stream.text, 'abcdefgh');
  assert.ok(stream.writeShut);
  // The host ends its side.
  stream.eof = true;
  t.received();
  t.dev.streamReadable(stream);
  const [shut] = t.received();
  assert.deepEqual([shut!.h.op, shut!.h.flags], [VSOCK_OP.SHUTDOWN, SHUTDOWN_F.SEND]);
  // The guest closes its socket: SHUTDOWN both, answered by RST, stream closed.
  t.send({ op: VSOCK_OP.SHUTDOWN, flags: SHUTDOWN_F.SEND | SHUTDOWN_F.RCV });
  assert.ok(stream.closed);
  assert.equal(t.received()[0]!.h.op, VSOCK_OP.RST);
  assert.equal(t.dev.connectionCount, 0);
});

test('hostile packets are dropped and counted: lying lengths, spoofed CIDs, wrong types, writable parts', () => {
  const t = setup();
  t.giveRx(8);
  t.send({ op: VSOCK_OP.REQUEST });
  t.received();
  const stream = t.host.streams.get(1234)![0]!;
  // A header claiming 4 KiB while carrying 10 bytes.
  const lie = encodeHeader(t.hdr({ op: VSOCK_OP.RW, len: 4096 }));
  t.memory.write(TX_BUFS, lie);
  t.memory.write(TX_BUFS + 0x40, Buffer.from('0123456789'));
  t.offer(TXQ, 60, [[TX_BUFS, VSOCK_HDR_BYTES, false], [TX_BUFS + 0x40, 10, false]]);
  t.dev.onNotify(1);
  t.send({ op: VSOCK_OP.RW, srcCid: 7n }, Buffer.from('spoofed'));
  t.send({ op: VSOCK_OP.RW, dstCid: 5n }, Buffer.from('not for the host'));
  t.send({ op: VSOCK_OP.RW, len: 70000 });
  // A header split across descriptors still parses; a chain with a writable part does not count.
  const h = encodeHeader(t.hdr({ op: VSOCK_OP.RW, len: 2 }));
  t.memory.write(TX_BUFS + 0x1000, h.subarray(0, 10));
  t.memory.write(TX_BUFS + 0x2000, Buffer.concat([h.subarray(10), Buffer.from('ok')]));
  t.offer(TXQ, 50, [[TX_BUFS + 0x1000, 10, false], [TX_BUFS + 0x2000, VSOCK_HDR_BYTES - 10 + 2, false]]);
  t.dev.onNotify(1);
  t.offer(TXQ, 40, [[TX_BUFS + 0x3000, VSOCK_HDR_BYTES, true]]);
  t.dev.onNotify(1);
  assert.equal(stream.text, 'ok', 'only the well-formed packet reached the host');
  assert.equal(t.metrics().dropped, 5);
  t.send({ op: VSOCK_OP.RW, type: 2 }, Buffer.from('seqpacket'));
  assert.equal(t.received().at(-1)!.h.op, VSOCK_OP.RST);
  assert.ok(!stream.closed, 'the connection itself is untouched');
});

test('a device reset (guest reboot) closes every host stream', () => {
  const t = setup();
  t.giveRx(8);
  t.send({ op: VSOCK_OP.REQUEST, srcPort: 1 });
  t.send({ op: VSOCK_OP.REQUEST, srcPort: 2 });
  const host = new FakeStream();
  t.dev.openFromHost(host, 52);
  assert.equal(t.dev.connectionCount, 3);
  t.bar.write(COMMON.DEVICE_STATUS, le(0, 1));
  t.dev.onControl();
  assert.ok([...t.host.streams.get(1234)!, host].every((s) => s.closed));
  assert.equal(t.dev.connectionCount, 0);
  // Not running: a host connection is closed at once.
  const after = new FakeStream();
  t.dev.openFromHost(after, 52);
  assert.ok(after.closed);
});

test('a guest that keeps both rings full is served in a loop, not by recursion: 300 000 packets, no stack overflow', () => {
  // The device calls back into the refill during setup's own start-up, before `t` exists.
  const ctx: { t?: ReturnType<typeof setup> } = {};
  let refills = 0;
  const TOTAL = 300_000;
  // Each interrupt, the "guest" puts both rings back full and asks for the next interrupt at once
  // (used_event = used idx), without notifying: the device must keep pulling by itself.
  const refill = (): void => {
    const t = ctx.t;
    if (!t || refills >= TOTAL) return;
    for (let i = 0; i < 16 && refills < TOTAL; i++, refills++) {
      const slot = refills % 32;
      t.offer(RXQ_REF, slot * 2, [[RX_BUFS_REF + slot * 0x1100, 44, true], [RX_BUFS_REF + slot * 0x1100 + 0x40, 4096, true]]);
      // Each packet for another unknown connection: each needs its own RST.
      t.memory.write(TX_BUFS + slot * 0x100, encodeHeader(t.hdr({ op: VSOCK_OP.RW, srcPort: refills, dstPort: 9, len: 0 })));
      t.offer(TXQ, slot, [[TX_BUFS + slot * 0x100, 44, false]]);
    }
    for (const q of [RXQ_REF, TXQ]) t.d.setUint16(q.avail + 4 + 2 * q.size, t.d.getUint16(q.used + 2, true), true);
  };
  const t = setup(refill);
  ctx.t = t;
  refill();
  t.dev.onNotify(1);
  const m = t.metrics();
  console.log(`# ${m.txPackets} guest packets taken, ${m.resetsSent} RSTs sent in one notification`);
  assert.ok(m.txPackets > 100_000, 'the loop kept pulling');
  assert.equal(m.errors, 0);
});

test('host connections while the guest takes no receive buffers: the backlog is bounded, unsent REQUESTs leave without RST', () => {
  const t = setup();
  const streams = Array.from({ length: 300 }, () => new FakeStream());
  for (const s of streams) t.dev.openFromHost(s, 52);
  assert.equal(streams.filter((s) => s.closed).length, 300 - 256, 'refused beyond the control backlog');
  t.advance(2500);
  t.dev.tick();
  assert.ok(streams.every((s) => s.closed), 'every unanswered connection timed out');
  t.giveRx(8);
  assert.equal(t.received().length, 0, 'no RST for REQUESTs the guest never saw');
});

test('the guest shutting down its receiving side shuts the host stream\'s reading side; event buffers stay in their ring', () => {
  const t = setup();
  t.giveRx(4);
  t.send({ op: VSOCK_OP.REQUEST });
  const stream = t.host.streams.get(1234)![0]!;
  t.send({ op: VSOCK_OP.SHUTDOWN, flags: SHUTDOWN_F.RCV });
  assert.ok(stream.readShut);
  assert.ok(!stream.closed);
  t.offer(EVQ, 0, [[0x9000, 4, true]]);
  t.dev.onNotify(2);
  assert.equal(t.d.getUint16(EVQ.used + 2, true), 0, 'not returned: kept for an event');
});

test('fuzz: 100 000 random packets, host events and buffers — no exception, credit never exceeded, no data invented', () => {
  const t = setup();
  // mulberry32: a seeded generator whose every bit is usable (an LCG's low bits repeat).
  let seed = 0x1234567;
  const rand = (n: number): number => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return Math.floor((((x ^ (x >>> 14)) >>> 0) / 2 ** 32) * n);
  };
  const ports = [1234, 52, 7, 40000, 0, 0xffffffff];
  let guestSent = 0;
  const hostStreams: FakeStream[] = [];
  for (let i = 0; i < 100_000; i++) {
    const r = rand(100);
    if (r < 60) {
      const payload = Buffer.alloc(rand(5) === 0 ? rand(70000) : rand(300), 0x41);
      const p: Partial<VsockHeader> = {
        op: rand(9), srcPort: ports[rand(ports.length)]!, dstPort: ports[rand(ports.length)]!, type: rand(10) === 0 ? rand(4) : 1,
        srcCid: rand(20) === 0 ? BigInt(rand(5)) : 3n, dstCid: rand(20) === 0 ? BigInt(rand(5)) : 2n, flags: rand(4),
        bufAlloc: rand(3) === 0 ? rand(2 ** 20) : 65536, fwdCnt: rand(4) === 0 ? rand(2 ** 20) : 0, len: rand(10) === 0 ? rand(2 ** 32) : payload.length,
      };
      const carried = payload.subarray(0, Math.min(payload.length, 0x10000));
      if (t.send(p, carried) && (p.len ?? 0) <= carried.length) guestSent += p.len ?? 0;
    } else if (r < 75) {
      t.giveRx(1 + rand(4));
    } else if (r < 85) {
      const all = [...t.host.streams.values()].flat().concat(hostStreams).filter((s) => !s.closed);
      const s = all[rand(all.length)];
      if (s) {
        if (rand(3) === 0) s.eof = true; else s.incoming.push(Buffer.alloc(rand(9000), 0x42));
        s.capacity = rand(3) === 0 ? rand(100) : Infinity;
        t.dev.streamReadable(s);
        t.dev.streamWritable(s);
      }
    } else if (r < 87) {
      const s = new FakeStream();
      hostStreams.push(s);
      t.dev.openFromHost(s, ports[rand(ports.length)]!);
    } else if (r < 92) {
      t.advance(rand(4000));
      t.dev.tick();
    } else {
      for (const p of t.received()) {
        assert.ok(p.h.len <= PAYLOAD, 'a packet never exceeds the buffer');
        assert.equal(p.h.dstCid, 3n);
        assert.equal(p.h.srcCid, 2n);
      }
    }
  }
  const delivered = [...t.host.streams.values()].flat().concat(hostStreams).reduce((n, s) => n + s.written.reduce((k, b) => k + b.length, 0), 0);
  assert.ok(delivered <= guestSent, 'the host got no more than the guest sent');
  const m = t.metrics();
  console.log(`# vsock fuzz: 100000 steps, metrics ${JSON.stringify(m)}`);
  assert.ok(m.dropped > 0 && m.resetsSent > 0 && m.txPackets > 10_000 && m.rxBytes > 0, 'the loop reached the device logic');
  assert.equal(m.errors, 0, 'well-formed rings never broke');
  assert.ok(m.active <= 1024);
});
