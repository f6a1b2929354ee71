// A virtio-vsock driver for unit tests, behaving as Linux 6.1's virtio_transport does: receive
// buffers of a 44-byte header descriptor and a 4 KiB payload descriptor, transmit chains of header
// then payload, never more chains in flight than the ring holds.
import assert from 'node:assert/strict';
import * as libc from '../../src/sys/libc.js';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { createVirtioPciDevice, VIRTIO_ID } from '../../src/devices/virtio/pci-device.js';
import { VIRTIO_F_VERSION_1 } from '../../src/devices/virtio/pci-common.js';
import { decodeHeader, encodeHeader, HOST_CID, VSOCK_HDR_BYTES, VSOCK_OP, VSOCK_TYPE_STREAM, vsockConfig, type VsockHeader } from '../../src/devices/virtio/vsock/packet.js';
import { readVsockMetrics, VSOCK_FEATURES, VSOCK_METRICS, VsockDeviceRuntime, type VsockHost } from '../../src/devices/virtio/vsock/device.js';
import { driveToOk, type TestQueue } from './virtio-driver.js';
import { RingDriver } from './ring-driver.js';

export const GUEST_CID = 3;
export const RXQ: TestQueue = { size: 64, desc: 0x1000, avail: 0x2000, used: 0x3000 };
export const TXQ: TestQueue = { size: 64, desc: 0x4000, avail: 0x5000, used: 0x6000 };
export const EVQ: TestQueue = { size: 8, desc: 0x7000, avail: 0x7800, used: 0x7c00 };
export const RX_BUFS = 0x10000;
export const TX_BUFS = 0x60000;
export const PAYLOAD = 4096;

export interface Packet { h: VsockHeader; payload: Buffer }

export function setupVsock(host: VsockHost, onInterrupt: (vector: number) => void = () => undefined) {
  const memory = GuestMemory.anonymous(0x400000);
  const state = createVirtioPciDevice({ deviceId: VIRTIO_ID.VSOCK, classCode: [0xff, 0, 0], features: VSOCK_FEATURES, queueMaxSizes: [64, 64, 8], deviceConfig: vsockConfig(GUEST_CID), barAddress: 0xc000_0000 });
  const fds = [0, 1, 2, 3].map(() => libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK));
  const bar = driveToOk(state, VSOCK_FEATURES | VIRTIO_F_VERSION_1, [RXQ, TXQ, EVQ], { controlFd: fds[0]!, queueFds: fds.slice(1) });
  for (const fd of fds) libc.close(fd);
  const metrics = new SharedArrayBuffer(8 * VSOCK_METRICS.SLOTS);
  let clock = 1000;
  const dev = new VsockDeviceRuntime(memory, state, GUEST_CID, host, metrics, (vector) => onInterrupt(vector), () => clock);
  dev.onControl();
  const d = new DataView(memory.bytes.buffer);
  const usedSeen = new Map<number, number>();
  let txSlot = 0;
  const drivers = new Map([RXQ, TXQ, EVQ].map((q) => [q.avail, new RingDriver(memory, q)]));
  const offer = (q: TestQueue, first: number, bufs: [number, number, boolean][]): void => drivers.get(q.avail)!.offer(first, bufs);
  /** Linux 6.1's receive buffers: header descriptor + 4 KiB payload descriptor, `n` of them. */
  let rxNext = 0;
  /** Chains made available on `q` and not yet returned (a driver never offers more than its ring holds). */
  // A receive buffer is the driver's again only once received() has read it (as Linux's rx work does).
  const inFlight = (q: TestQueue): number => (drivers.get(q.avail)!.offered - (q === RXQ ? usedSeen.get(RXQ.used) ?? 0 : d.getUint16(q.used + 2, true))) & 0xffff;
  const giveRx = (n: number): void => {
    for (let i = 0; i < n && inFlight(RXQ) < RXQ.size / 2; i++) {
      const slot = rxNext++ % (RXQ.size / 2);
      offer(RXQ, slot * 2, [[RX_BUFS + slot * 0x1100, VSOCK_HDR_BYTES, true], [RX_BUFS + slot * 0x1100 + 0x40, PAYLOAD, true]]);
    }
    dev.onNotify(0);
  };
  /** Packets the device returned on rxq since the last call. */
  const received = (): Packet[] => {
    const out: Packet[] = [];
    const idx = d.getUint16(RXQ.used + 2, true);
    let seen = usedSeen.get(RXQ.used) ?? 0;
    for (; seen !== idx; seen = (seen + 1) & 0xffff) {
      const head = d.getUint32(RXQ.used + 4 + 8 * (seen % RXQ.size), true);
      const len = d.getUint32(RXQ.used + 8 + 8 * (seen % RXQ.size), true);
      const base = d.getBigUint64(RXQ.desc + 16 * head, true);
      const h = decodeHeader(memory.read(Number(base), VSOCK_HDR_BYTES));
      assert.equal(len, VSOCK_HDR_BYTES + h.len, 'used length is header + payload');
      out.push({ h, payload: Buffer.from(memory.read(Number(base) + 0x40, h.len)) });
    }
    usedSeen.set(RXQ.used, seen);
    return out;
  };
  const hdr = (p: Partial<VsockHeader>): VsockHeader => ({
    srcCid: BigInt(GUEST_CID), dstCid: BigInt(HOST_CID), srcPort: 40000, dstPort: 1234, len: 0, type: VSOCK_TYPE_STREAM, op: VSOCK_OP.RW,
    flags: 0, bufAlloc: 8192, fwdCnt: 0, ...p,
  });
  /** One transmit chain: header descriptor, then the payload descriptor (as Linux 6.1). */
  const send = (p: Partial<VsockHeader>, payload: Uint8Array = new Uint8Array(0)): boolean => {
    if (inFlight(TXQ) >= TXQ.size / 2) return false;
    const h = hdr({ len: payload.length, ...p });
    const slot = txSlot++ % (TXQ.size / 2);
    const at = TX_BUFS + slot * 0x11000;
    memory.write(at, encodeHeader(h));
    memory.write(at + 0x40, payload);
    offer(TXQ, slot * 2, payload.length ? [[at, VSOCK_HDR_BYTES, false], [at + 0x40, payload.length, false]] : [[at, VSOCK_HDR_BYTES, false]]);
    dev.onNotify(1);
    return true;
  };
  return {
    memory, dev, state, bar, d, offer, giveRx, received, send, hdr, metrics: () => readVsockMetrics(metrics),
    advance: (ms: number) => { clock += ms; },
  };
}

