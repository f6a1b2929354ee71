// bench:net-datapath — what the VMM's virtio-net path costs per byte when the guest is not the
// bottleneck. On PVM hosts a guest's TCP stack runs in KVM's emulator and sends ~1.5 KB frames one
// at a time, so bench:net measures our per-wake-up cost more than our per-byte cost. Here two
// virtio-net device runtimes (the very code of the I/O thread: IoLoop, NetDeviceRuntime, TapBackend)
// sit on two real TAPs on a real bridge, each driven by a synthetic guest driver (split rings in a
// memfd mapped like guest RAM, Linux's buffer shapes: a header descriptor plus the payload on TX,
// 4 KiB mergeable buffers on RX, EVENT_IDX). Device A transmits TCPv4 frames — 64 KiB TSO frames,
// as a Linux guest with TSO sends them on hardware, and 1514-byte frames — the bridge forwards them
// whole to device B's TAP (its driver accepted GUEST_TSO4), and B delivers them into its driver's
// buffers. We count the I/O thread's CPU time (clock_gettime per handler) per GB each way and per
// frame, and set it beside Firecracker's published bar. TX includes the host kernel's work for the
// writev (the TAP and the bridge forwarding to B's queue), as a VMM's thread pays it in production.
// Everything runs in a network namespace the bench creates and deletes.
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import * as libc from '../src/sys/libc.js';
import { openTap } from '../src/sys/tap.js';
import { GuestMemory } from '../src/memory/guest-memory.js';
import { createVirtioPciDevice, VIRTIO_ID } from '../src/devices/virtio/pci-device.js';
import { VIRTIO_F_VERSION_1 } from '../src/devices/virtio/pci-common.js';
import { NET_FEATURES, NET_QUEUE, netConfig, parseMac } from '../src/devices/virtio/net/config.js';
import { NET_HDR_BYTES, NET_METRICS, NetDeviceRuntime } from '../src/devices/virtio/net/device.js';
import { TapBackend } from '../src/vmm/tap-backend.js';
import { EPOLL, IoLoop } from '../src/vmm/io-loop.js';
import { driveToOk } from '../test/helpers/virtio-driver.js';
import { RingDriver, type RingLayout } from '../test/helpers/ring-driver.js';
import { inNetworkNamespace } from './lib/netns.js';
import { median, printResult } from './lib/report.js';

const GB = 1e9;
/** Firecracker's published bar: 14.5 Gbps at ≤ 80 % of one core → 0.8 / (14.5 / 8) core-s per GB. */
const FIRECRACKER_CORE_S_PER_GB = 0.8 / (14.5 / 8);
const MB_PER_CASE = Number(process.env['BENCH_MB'] ?? 2000);
const RING = 256;
const TX_SLOTS = RING / 2;
const RX_BUFFER = 4096;
const ETH_IP_TCP = 14 + 20 + 20;
const MAC_A = parseMac('52:54:00:00:00:0a')!;
const MAC_B = parseMac('52:54:00:00:00:0b')!;
const MEMORY_BYTES = 32 * 2 ** 20;
const TX_FRAMES_AT = 1 * 2 ** 20;
const TX_SLOT_BYTES = 0x11000;
const RX_BUFFERS_AT = 16 * 2 ** 20;

const ringAt = (base: number): RingLayout => ({ size: RING, desc: base, avail: base + 0x1000, used: base + 0x2000 });

function ipChecksum(b: Uint8Array, at: number, len: number): number {
  let sum = 0;
  for (let i = 0; i < len; i += 2) sum += (b[at + i]! << 8) | b[at + i + 1]!;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  return ~sum & 0xffff;
}

/** A virtio-net header and an Ethernet/IPv4/TCP frame A → B with `payload` bytes; TSO when it exceeds one MSS. */
function frame(payload: number, seq: number): Uint8Array {
  const f = new Uint8Array(NET_HDR_BYTES + ETH_IP_TCP + payload);
  const v = new DataView(f.buffer);
  const gso = payload > 1460;
  f[0] = 1; // VIRTIO_NET_HDR_F_NEEDS_CSUM: the TCP checksum is left to the host (or the NIC)
  f[1] = gso ? 1 : 0; // VIRTIO_NET_HDR_GSO_TCPV4
  v.setUint16(2, ETH_IP_TCP, true);
  v.setUint16(4, gso ? 1448 : 0, true);
  v.setUint16(6, 14 + 20, true);
  v.setUint16(8, 16, true);
  const e = NET_HDR_BYTES;
  f.set(MAC_B, e);
  f.set(MAC_A, e + 6);
  v.setUint16(e + 12, 0x0800);
  const ip = e + 14;
  f.set([0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0, 10, 99, 0, 1, 10, 99, 0, 2], ip);
  v.setUint16(ip + 2, 20 + 20 + payload);
  v.setUint16(ip + 10, ipChecksum(f, ip, 20));
  const tcp = ip + 20;
  v.setUint16(tcp, 40000);
  v.setUint16(tcp + 2, 5201);
  v.setUint32(tcp + 4, seq);
  f[tcp + 12] = 5 << 4;
  f[tcp + 13] = 0x10; // ACK
  v.setUint16(tcp + 14, 0xffff);
  for (let i = 0; i < payload; i++) f[tcp + 20 + i] = (i * 7 + seq) & 0xff;
  return f;
}

interface Side {
  dev: NetDeviceRuntime; metrics: Float64Array; rx: RingDriver; tx: RingDriver; queueFds: number[]; irqFd: number; tapFd: number;
  /** Where the TAP backend's epoll interest changes go. */
  setWatch(watch: (wanted: boolean) => void): void;
}

function makeSide(memory: GuestMemory, name: string, mac: Uint8Array, ringBase: number): Side {
  const tap = openTap(name);
  const state = createVirtioPciDevice({ deviceId: VIRTIO_ID.NET, classCode: [2, 0, 0], features: NET_FEATURES, queueMaxSizes: [RING, RING], deviceConfig: netConfig(mac), barAddress: 0xc000_0000 });
  const controlFd = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
  const queueFds = [libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK), libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK)];
  const rxRing = ringAt(ringBase);
  const txRing = ringAt(ringBase + 0x10000);
  driveToOk(state, NET_FEATURES | VIRTIO_F_VERSION_1, [rxRing, txRing], { controlFd, queueFds });
  const irqFd = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
  const metrics = new SharedArrayBuffer(8 * NET_METRICS.SLOTS);
  const watcher = { watch: (_wanted: boolean): void => {} };
  // The interrupt: an irqfd write, as the I/O worker's MSI router does.
  const dev = new NetDeviceRuntime(memory, state, new TapBackend(tap.fd, (wanted) => watcher.watch(wanted)), metrics, () => libc.eventfdSignal(irqFd));
  dev.onControl();
  return {
    dev, metrics: new Float64Array(metrics), rx: new RingDriver(memory, rxRing), tx: new RingDriver(memory, txRing), queueFds, irqFd, tapFd: tap.fd,
    setWatch: (w) => { watcher.watch = w; },
  };
}

interface CaseResult { frames: number; bytes: number; txNs: number; rxNs: number; loopNs: number; interrupts: number }

function inner(): Promise<void> {
  execFileSync('sysctl', ['-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
  const memfd = libc.memfdCreate('bench-guest-ram');
  libc.ftruncate(memfd, MEMORY_BYTES);
  const addr = libc.mmap(MEMORY_BYTES, libc.PROT_READ | libc.PROT_WRITE, libc.MAP_SHARED, memfd, 0, 'mmap(bench guest memory)');
  const memory = new GuestMemory(new Uint8Array(libc.hostView(addr, MEMORY_BYTES)), [{ gpa: 0, size: MEMORY_BYTES, hostOffset: 0 }]);
  const a = makeSide(memory, 'tvdpa', MAC_A, 0x10000);
  const b = makeSide(memory, 'tvdpb', MAC_B, 0x30000);
  execFileSync('ip', ['link', 'add', 'tvdpbr', 'type', 'bridge']);
  for (const dev of ['tvdpa', 'tvdpb']) execFileSync('ip', ['link', 'set', dev, 'master', 'tvdpbr', 'up']);
  execFileSync('ip', ['link', 'set', 'tvdpbr', 'up']);
  // B hears only A's frames (its static forwarding entry), not the bridge's own multicast chatter.
  execFileSync('bridge', ['fdb', 'add', '52:54:00:00:00:0b', 'dev', 'tvdpb', 'master', 'static']);
  for (const dev of ['tvdpa', 'tvdpb']) execFileSync('bridge', ['link', 'set', 'dev', dev, 'flood', 'off', 'mcast_flood', 'off']);

  const loop = new IoLoop();
  // Each timed handler also pays for one clock read; that is measured here and taken off.
  const clockNs = clockReadNs();
  const timed = { tx: 0, rx: 0 };
  const on = (fd: number, kind: 'tx' | 'rx', run: () => void, drain: boolean): number => loop.add(fd, () => {
    const t = libc.threadCpuTimeNs();
    if (drain) libc.eventfdRead(fd);
    run();
    timed[kind] += libc.threadCpuTimeNs() - t - clockNs;
  });
  on(a.queueFds[NET_QUEUE.TX]!, 'tx', () => a.dev.onNotify(NET_QUEUE.TX), true);
  on(b.queueFds[NET_QUEUE.RX]!, 'rx', () => b.dev.onNotify(NET_QUEUE.RX), true);
  const bToken = on(b.tapFd, 'rx', () => b.dev.onBackendReadable(), false);
  b.setWatch((wanted) => loop.modify(b.tapFd, bToken, wanted ? EPOLL.IN : 0));
  for (let i = 0; i < RING; i++) b.rx.offer(i, [[RX_BUFFERS_AT + i * RX_BUFFER, RX_BUFFER, true]]);
  b.dev.onNotify(NET_QUEUE.RX);

  const runCase = (payload: number, perRound: number, bytesWanted: number, check: boolean): CaseResult => {
    const frameBytes = NET_HDR_BYTES + ETH_IP_TCP + payload;
    for (let s = 0; s < TX_SLOTS; s++) memory.write(TX_FRAMES_AT + s * TX_SLOT_BYTES, frame(payload, s));
    const rounds = Math.max(1, Math.ceil(bytesWanted / (payload * perRound)));
    const start = { ...timed, rxPackets: b.metrics[NET_METRICS.RX_PACKETS]!, rxBytes: b.metrics[NET_METRICS.RX_BYTES]! };
    let loopNs = 0;
    let interrupts = 0;
    let slot = 0;
    for (let r = 0; r < rounds; r++) {
      for (let k = 0; k < perRound; k++, slot = (slot + 1) % TX_SLOTS) {
        const at = TX_FRAMES_AT + slot * TX_SLOT_BYTES;
        a.tx.offer(2 * slot, [[at, NET_HDR_BYTES + ETH_IP_TCP, false], [at + NET_HDR_BYTES + ETH_IP_TCP, payload, false]]);
      }
      if (a.tx.needsNotify()) libc.eventfdSignal(a.queueFds[NET_QUEUE.TX]!);
      const want = start.rxPackets + (r + 1) * perRound;
      const deadline = Date.now() + 10_000;
      while (b.metrics[NET_METRICS.RX_PACKETS]! < want) {
        if (Date.now() > deadline) {
          throw new Error(`frames did not arrive: device A sent ${a.metrics[NET_METRICS.TX_PACKETS]} (dropped ${a.metrics[NET_METRICS.TX_DROPPED]}), B received ${b.metrics[NET_METRICS.RX_PACKETS]} (dropped ${b.metrics[NET_METRICS.RX_DROPPED]})`);
        }
        const t = libc.threadCpuTimeNs();
        loop.runOnce(5);
        loopNs += libc.threadCpuTimeNs() - t - clockNs;
      }
      // The guests' side, not timed: take the interrupts, reclaim TX buffers, hand RX buffers back.
      interrupts += Number(libc.eventfdRead(a.irqFd) + libc.eventfdRead(b.irqFd));
      a.tx.reap();
      const returned = b.rx.reap();
      if (check && r === 0) verifyReceived(memory, payload, frameBytes, returned);
      for (const [head] of returned) {
        b.rx.offer(head, [[RX_BUFFERS_AT + head * RX_BUFFER, RX_BUFFER, true]]);
      }
      if (b.rx.needsNotify()) libc.eventfdSignal(b.queueFds[NET_QUEUE.RX]!);
    }
    // Buffers handed back after the last round are picked up in the next case (or never): not counted.
    const frames = b.metrics[NET_METRICS.RX_PACKETS]! - start.rxPackets;
    return { frames, bytes: b.metrics[NET_METRICS.RX_BYTES]! - start.rxBytes, txNs: timed.tx - start.tx, rxNs: timed.rx - start.rx, loopNs, interrupts };
  };

  const result: Record<string, unknown> = { mb_per_case: MB_PER_CASE, clock_read_ns: clockNs };
  const cases = [{ name: 'tso64k', payload: 65536 - 2 * ETH_IP_TCP - NET_HDR_BYTES, perRound: 8 }, { name: 'mtu1514', payload: 1460, perRound: 128 },
    // One frame per wake-up, as an emulated guest sends them (bench:net on PVM hosts): the fixed cost of a wake-up.
    { name: 'mtu1514_single', payload: 1460, perRound: 1 }];
  for (const c of cases) {
    runCase(c.payload, c.perRound, MB_PER_CASE * 1e6 / 10, true); // warm-up: V8 compiles the path
    const r = runCase(c.payload, c.perRound, MB_PER_CASE * 1e6, false);
    const gb = r.bytes / GB;
    const fig = {
      frames: r.frames, frame_bytes: c.payload + ETH_IP_TCP,
      tx_cpu_core_s_per_gb: r.txNs / 1e9 / gb, rx_cpu_core_s_per_gb: r.rxNs / 1e9 / gb, io_thread_cpu_core_s_per_gb: r.loopNs / 1e9 / gb,
      tx_us_per_frame: r.txNs / 1e3 / r.frames, rx_us_per_frame: r.rxNs / 1e3 / r.frames, interrupts_per_frame: r.interrupts / r.frames,
    };
    for (const [k, v] of Object.entries(fig)) result[`${c.name}_${k}`] = v;
    console.log(`${c.name}: ${r.frames} frames of ${fig.frame_bytes} B — TX ${fig.tx_cpu_core_s_per_gb.toFixed(3)} core-s/GB (${fig.tx_us_per_frame.toFixed(2)} µs/frame), RX ${fig.rx_cpu_core_s_per_gb.toFixed(3)} core-s/GB (${fig.rx_us_per_frame.toFixed(2)} µs/frame), whole I/O thread ${fig.io_thread_cpu_core_s_per_gb.toFixed(3)} core-s/GB for both devices`);
  }
  const n = (k: string): number => result[k] as number;
  result['ratio_tx_cpu_vs_firecracker_bar'] = n('tso64k_tx_cpu_core_s_per_gb') / FIRECRACKER_CORE_S_PER_GB;
  result['ratio_rx_cpu_vs_firecracker_bar'] = n('tso64k_rx_cpu_core_s_per_gb') / FIRECRACKER_CORE_S_PER_GB;
  console.log(`Firecracker's bar: ≤ ${FIRECRACKER_CORE_S_PER_GB.toFixed(3)} core-s/GB → ratio TX ${n('ratio_tx_cpu_vs_firecracker_bar').toFixed(2)}, RX ${n('ratio_rx_cpu_vs_firecracker_bar').toFixed(2)} (64 KiB TSO frames)`);
  console.log('qemu: no peer here — QEMU cannot be driven without a guest, and cannot boot one on this host (see bench:net)');
  printResult(result);
  return Promise.resolve();
}

/** What one clock_gettime(CLOCK_THREAD_CPUTIME_ID) costs this thread (median of batches). */
function clockReadNs(): number {
  const batches: number[] = [];
  for (let b = 0; b < 21; b++) {
    const t = libc.threadCpuTimeNs();
    for (let i = 0; i < 5000; i++) libc.threadCpuTimeNs();
    batches.push((libc.threadCpuTimeNs() - t) / 5001);
  }
  return median(batches);
}

/**
 * The frames in `returned` arrived whole: num_buffers right, headers and payload as sent (the TCP
 * sequence number names the slot). Frames not from A (the bridge's own IGMP reports) are skipped.
 */
function verifyReceived(memory: GuestMemory, payload: number, frameBytes: number, returned: readonly [number, number][]): void {
  let ours = 0;
  for (let i = 0; i < returned.length;) {
    const [head, written] = returned[i]!;
    const first = memory.read(RX_BUFFERS_AT + head * RX_BUFFER, written);
    const buffers = first[10]! | (first[11]! << 8);
    const got = new Uint8Array(returned.slice(i, i + buffers).reduce((n, [, w]) => n + w, 0));
    let at = 0;
    for (const [h, w] of returned.slice(i, i + buffers)) { got.set(memory.read(RX_BUFFERS_AT + h * RX_BUFFER, w), at); at += w; }
    i += buffers;
    if (!MAC_A.every((byte, k) => got[NET_HDR_BYTES + 6 + k] === byte)) continue;
    ours++;
    if (got.length !== frameBytes || buffers !== Math.ceil(frameBytes / RX_BUFFER)) {
      throw new Error(`a frame of ${frameBytes} bytes arrived as ${got.length} bytes in ${buffers} buffers`);
    }
    const sent = frame(payload, new DataView(got.buffer).getUint32(NET_HDR_BYTES + ETH_IP_TCP - 20 + 4));
    for (let k = NET_HDR_BYTES; k < got.length; k++) {
      if (got[k] !== sent[k]) throw new Error(`a received frame differs from the one sent at byte ${k}`);
    }
  }
  if (ours === 0) throw new Error('none of the frames received came from the sending device');
}

await inNetworkNamespace(fileURLToPath(import.meta.url), 'netdp', inner);
