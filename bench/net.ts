// bench:net — virtio-net on a TAP and virtio-vsock, host ↔ guest: TCP throughput both ways (guest
// downloads from a host server: guest RX; the host fetches from the guest's httpd: guest TX), TCP
// and vsock request/response latency, vsock throughput both ways (the agent's file transfer), ICMP
// round trips, and the VMM's host CPU time per GB moved (the I/O worker thread). Everything runs in
// a network namespace the bench creates and deletes: it re-runs itself under `ip netns exec`, so
// the VMM, its TAP, the host-side server and all traffic stay in there. QEMU's userspace virtio-net
// (`-netdev tap`, no vhost) boots the same guest with the same download in the same run; where it
// cannot boot the guest (PVM hosts) its failure is reported and our CPU per GB is set beside
// Firecracker's published bar.
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { ensureDefaultGuest } from '../src/guest/default-guest.js';
import { encodeCommand } from '../src/guest/command-protocol.js';
import { Vm } from '../src/vmm/vm.js';
import { median, printResult } from './lib/report.js';
import { runQemu } from './lib/qemu.js';
import { inNetworkNamespace } from './lib/netns.js';

// Small by default: on PVM hosts the guest's TCP stack runs in KVM's emulator.
const MIB = Number(process.env['BENCH_MIB'] ?? 8);
const ROUND_TRIPS = Number(process.env['BENCH_RR'] ?? 30);
const GB = 1e9;
/** Firecracker's published bar: 14.5 Gbps at ≤ 80 % of one core → 0.8 / (14.5 / 8) core-s per GB. */
const FIRECRACKER_CORE_S_PER_GB = 0.8 / (14.5 / 8);
const HOST_IP = '10.98.0.1';
const GUEST_IP = '10.98.0.2';
const PHASES = ['PHASE-RX', 'PHASE-HOST', 'PHASE-PING', 'PHASE-END'];

interface Sample { t: number; rx: number; tx: number; frames: number; vsockRx: number; vsockTx: number; cpuNs: number; wakeups: number }

/** The guest's part: a download from the host, then it waits (on its console) while the host drives the rest. */
function guestScript(waitForHost: boolean): string {
  return [
    `mkdir -p /tmp/www && head -c ${MIB * 2 ** 20} /dev/zero > /tmp/www/blob && echo small > /tmp/www/rr && httpd -p 8000 -h /tmp/www`,
    `ping -c 1 -W 10 ${HOST_IP} >/dev/null`,
    // A first download is not measured: V8 compiles the packet path during the first few thousand frames.
    `wget -q -O /dev/null http://${HOST_IP}:8080/blob`,
    'echo PHASE-RX', `wget -q -O /dev/null http://${HOST_IP}:8080/blob`,
    'echo PHASE-HOST', ...(waitForHost ? ['read _ < /dev/console'] : []),
    'echo PHASE-PING', `ping -c 20 -i 0.2 ${HOST_IP} | tail -1`,
    'echo PHASE-END',
  ].join('; ');
}

/** How the I/O thread's CPU divides over its wake-ups between two samples: frames (both ways) and CPU per wake-up. */
function perWakeup(phase: string, a: Sample, b: Sample): Record<string, number> {
  const wakeups = Math.max(1, b.wakeups - a.wakeups);
  return { [`${phase}_wakeups`]: b.wakeups - a.wakeups, [`${phase}_frames_per_wakeup`]: (b.frames - a.frames) / wakeups, [`${phase}_cpu_us_per_wakeup`]: (b.cpuNs - a.cpuNs) / 1e3 / wakeups };
}

function get(url: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    http.get(url, { agent: false }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () => resolve(Buffer.concat(parts)));
    }).on('error', reject);
  });
}

async function inner(): Promise<void> {
  const guest = await ensureDefaultGuest((l) => console.log(l));
  const payload = Buffer.alloc(MIB * 2 ** 20, 0x5a);
  const server = http.createServer((_req, res) => res.end(payload));
  execFileSync('ip', ['tuntap', 'add', 'dev', 'tvbench0', 'mode', 'tap']);
  execFileSync('ip', ['addr', 'add', `${HOST_IP}/24`, 'dev', 'tvbench0']);
  execFileSync('ip', ['link', 'set', 'tvbench0', 'up']);
  await new Promise<void>((resolve) => server.listen(8080, HOST_IP, resolve));
  const vm = await Vm.create({
    kernel: guest.kernel, initrd: guest.initrd, memoryMib: 512, cmdline: `quiet ${encodeCommand(['sh', '-c', guestScript(true)])}`,
    nets: [{ tap: 'tvbench0', address: `${GUEST_IP}/24` }],
  });
  let log = '';
  const marks = new Map<string, Sample>();
  const sample = (): Sample => {
    const m = vm.metrics();
    const n = m.nets[0]!;
    return { t: performance.now(), rx: n.rxBytes, tx: n.txBytes, frames: n.rxPackets + n.txPackets, vsockRx: m.vsock!.rxBytes, vsockTx: m.vsock!.txBytes, cpuNs: m.ioThreadCpuNs, wakeups: m.ioThreadWakeups };
  };
  const result: Record<string, unknown> = { mib: MIB, round_trips: ROUND_TRIPS };
  let hostPart: Promise<void> | undefined;
  /** While the guest waits: TCP guest → host bulk, TCP and vsock round trips, vsock bulk both ways. */
  const driveFromHost = async (): Promise<void> => {
    await get(`http://${GUEST_IP}:8000/blob`);
    const s0 = sample();
    const fetched = await get(`http://${GUEST_IP}:8000/blob`);
    const s1 = sample();
    if (fetched.length !== payload.length) throw new Error(`fetched ${fetched.length} bytes of ${payload.length}`);
    result['tx_mbit_s'] = (fetched.length * 8) / 1e6 / ((s1.t - s0.t) / 1000);
    result['tx_cpu_core_s_per_gb'] = (s1.cpuNs - s0.cpuNs) / 1e9 / ((s1.tx - s0.tx) / GB);
    Object.assign(result, perWakeup('tx', s0, s1));
    const tcpRr: number[] = [];
    for (let i = 0; i < ROUND_TRIPS; i++) {
      const t = performance.now();
      await get(`http://${GUEST_IP}:8000/rr`);
      tcpRr.push(performance.now() - t);
    }
    result['tcp_rr_median_ms'] = median(tcpRr);
    await vm.waitForAgent(120_000);
    const vsockRr: number[] = [];
    for (let i = 0; i < ROUND_TRIPS; i++) {
      const t = performance.now();
      await vm.ping();
      vsockRr.push(performance.now() - t);
    }
    result['vsock_rr_median_ms'] = median(vsockRr);
    const v0 = sample();
    await vm.files.write('/tmp/vsock.bin', payload);
    const v1 = sample();
    const back = await vm.files.read('/tmp/vsock.bin');
    const v2 = sample();
    if (back.length !== payload.length) throw new Error('vsock read-back is short');
    result['vsock_host_to_guest_mbit_s'] = (payload.length * 8) / 1e6 / ((v1.t - v0.t) / 1000);
    result['vsock_guest_to_host_mbit_s'] = (payload.length * 8) / 1e6 / ((v2.t - v1.t) / 1000);
    result['vsock_host_to_guest_cpu_core_s_per_gb'] = (v1.cpuNs - v0.cpuNs) / 1e9 / ((v1.vsockRx - v0.vsockRx) / GB);
    result['vsock_guest_to_host_cpu_core_s_per_gb'] = (v2.cpuNs - v1.cpuNs) / 1e9 / ((v2.vsockTx - v1.vsockTx) / GB);
    vm.console.write('\n');
  };
  vm.console.on('data', (d: Buffer) => {
    log += d.toString('latin1');
    for (const phase of PHASES) {
      if (marks.has(phase) || !log.includes(`${phase}\r\n`)) continue;
      marks.set(phase, sample());
      if (phase === 'PHASE-HOST') hostPart = driveFromHost();
    }
  });
  await vm.start();
  const exit = await vm.waitForExit();
  await hostPart;
  server.close();
  const [rx0, host0, ping0, end] = PHASES.map((p) => marks.get(p));
  if (!rx0 || !host0 || !ping0 || !end) throw new Error(`the guest did not finish (${exit.reason}: ${exit.detail}); console tail: ${log.slice(-1500)}`);
  const rxBytes = host0.rx - rx0.rx;
  result['rx_mbit_s'] = (rxBytes * 8) / 1e6 / ((host0.t - rx0.t) / 1000);
  result['rx_cpu_core_s_per_gb'] = (host0.cpuNs - rx0.cpuNs) / 1e9 / (rxBytes / GB);
  Object.assign(result, perWakeup('rx', rx0, host0));
  const rtt = /= [\d.]+\/([\d.]+)\//.exec(log.slice(log.indexOf('PHASE-PING')))?.[1];
  result['ping_avg_ms'] = rtt === undefined ? null : Number(rtt);
  const n = (k: string): number => result[k] as number;
  console.log(`TCP guest download ${MIB} MiB (guest RX): ${n('rx_mbit_s').toFixed(1)} Mbit/s; VMM I/O thread ${n('rx_cpu_core_s_per_gb').toFixed(3)} core-s/GB`);
  console.log(`TCP host fetch from guest ${MIB} MiB (guest TX): ${n('tx_mbit_s').toFixed(1)} Mbit/s; VMM I/O thread ${n('tx_cpu_core_s_per_gb').toFixed(3)} core-s/GB`);
  console.log(`vsock ${MIB} MiB host → guest: ${n('vsock_host_to_guest_mbit_s').toFixed(1)} Mbit/s (${n('vsock_host_to_guest_cpu_core_s_per_gb').toFixed(3)} core-s/GB); guest → host: ${n('vsock_guest_to_host_mbit_s').toFixed(1)} Mbit/s (${n('vsock_guest_to_host_cpu_core_s_per_gb').toFixed(3)} core-s/GB)`);
  console.log(`request/response (median of ${ROUND_TRIPS}, a new connection each): TCP HTTP GET ${n('tcp_rr_median_ms').toFixed(2)} ms, vsock agent ping ${n('vsock_rr_median_ms').toFixed(2)} ms; ICMP ping avg ${rtt ?? '?'} ms`);
  result['ratio_rx_cpu_vs_firecracker_bar'] = n('rx_cpu_core_s_per_gb') / FIRECRACKER_CORE_S_PER_GB;
  result['ratio_tx_cpu_vs_firecracker_bar'] = n('tx_cpu_core_s_per_gb') / FIRECRACKER_CORE_S_PER_GB;
  console.log(`I/O thread wake-ups: RX ${n('rx_frames_per_wakeup').toFixed(2)} frames (both ways) and ${n('rx_cpu_us_per_wakeup').toFixed(1)} µs CPU each, TX ${n('tx_frames_per_wakeup').toFixed(2)} frames and ${n('tx_cpu_us_per_wakeup').toFixed(1)} µs each (bench:net-datapath: the same work without a guest)`);
  console.log(`Firecracker's bar: ≤ ${FIRECRACKER_CORE_S_PER_GB.toFixed(3)} core-s/GB → ratio RX ${n('ratio_rx_cpu_vs_firecracker_bar').toFixed(2)}, TX ${n('ratio_tx_cpu_vs_firecracker_bar').toFixed(2)}`);
  result['net_metrics'] = vm.metrics().nets[0];
  // The peer: QEMU's userspace virtio-net on a TAP of its own, the same guest and download.
  execFileSync('ip', ['tuntap', 'add', 'dev', 'tvqemu0', 'mode', 'tap']);
  execFileSync('ip', ['link', 'set', 'tvbench0', 'down']);
  execFileSync('ip', ['addr', 'flush', 'dev', 'tvbench0']);
  execFileSync('ip', ['addr', 'add', `${HOST_IP}/24`, 'dev', 'tvqemu0']);
  execFileSync('ip', ['link', 'set', 'tvqemu0', 'up']);
  const qServer = http.createServer((_req, res) => res.end(payload));
  await new Promise<void>((resolve) => qServer.listen(8080, HOST_IP, resolve));
  const q = await runQemu({ kernel: guest.kernel, initrd: guest.initrd }, {
    script: guestScript(false), markers: PHASES, timeoutMs: 600_000,
    devices: ['-netdev', 'tap,id=n0,ifname=tvqemu0,script=no,downscript=no,vhost=off', '-device', 'virtio-net-pci,netdev=n0'],
  });
  qServer.close();
  if (q.outcome === 'finished') {
    const qRx = (MIB * 2 ** 20 * 8) / 1e6 / ((q.marks.get('PHASE-HOST')! - q.marks.get('PHASE-RX')!) / 1000);
    Object.assign(result, { qemu: 'finished', qemu_rx_mbit_s: qRx, ratio_rx_throughput: n('rx_mbit_s') / qRx });
    console.log(`qemu: guest download ${qRx.toFixed(1)} Mbit/s → ratio ${(n('rx_mbit_s') / qRx).toFixed(2)}`);
  } else {
    Object.assign(result, { qemu: q.outcome, qemu_ended_s: q.totalMs / 1000, qemu_last_kernel_line: q.lastKernelLine });
    console.log(`qemu: ${q.outcome} after ${(q.totalMs / 1000).toFixed(1)} s (last kernel line: ${q.lastKernelLine || 'none'}) — no ratio on this host`);
  }
  printResult(result);
}

await inNetworkNamespace(fileURLToPath(import.meta.url), 'net', inner);
