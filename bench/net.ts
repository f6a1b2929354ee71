// bench:net — virtio-net on a TAP, host ↔ guest over TCP: guest download throughput (guest RX),
// host fetching from the guest's server (guest TX), ICMP round-trip latency, and the VMM's host
// CPU time per GB moved (the I/O worker thread). Everything runs inside a network namespace the
// bench creates and deletes: it re-runs itself under `ip netns exec`, so the VMM, its TAP, the
// host-side server and all traffic stay in there. QEMU's userspace virtio-net would run beside
// it where QEMU can boot the guest (not on PVM hosts).
import { execFileSync, spawnSync } from 'node:child_process';
import http from 'node:http';
import { fileURLToPath } from 'node:url';
import { ensureDefaultGuest } from '../src/guest/default-guest.js';
import { encodeCommand } from '../src/guest/command-protocol.js';
import { isPvmHost } from '../src/kvm/host-kind.js';
import { Vm } from '../src/vmm/vm.js';
import { printResult } from './lib/report.js';

// Small by default: on PVM hosts the guest's TCP stack runs in KVM's emulator.
const MIB = Number(process.env['BENCH_MIB'] ?? 8);
const GB = 1e9;
/** Firecracker's published bar: 14.5 Gbps at ≤ 80 % of one core → 0.8 / (14.5 / 8) core-s per GB. */
const FIRECRACKER_CORE_S_PER_GB = 0.8 / (14.5 / 8);
const HOST_IP = '10.98.0.1';
const GUEST_IP = '10.98.0.2';

interface Sample { t: number; rx: number; tx: number; cpuNs: number }

async function inner(): Promise<void> {
  const guest = await ensureDefaultGuest((l) => console.log(l));
  const payload = Buffer.alloc(MIB * 2 ** 20, 0x5a);
  const server = http.createServer((_req, res) => res.end(payload));
  await new Promise<void>((resolve) => server.listen(8080, HOST_IP, resolve));
  const script = [
    'ip link set eth0 up', `ip addr add ${GUEST_IP}/24 dev eth0`,
    `ping -c 1 -W 10 ${HOST_IP} >/dev/null`,
    `mkdir -p /tmp/www && head -c ${MIB * 2 ** 20} /dev/zero > /tmp/www/blob && httpd -p 8000 -h /tmp/www`,
    'echo PHASE-RX', `wget -q -O /dev/null http://${HOST_IP}:8080/`,
    'echo PHASE-TX', 'read _ < /dev/console',
    'echo PHASE-PING', `ping -c 20 -i 0.2 ${HOST_IP} | tail -1`,
    'echo PHASE-END',
  ].join('; ');
  const vm = await Vm.create({ kernel: guest.kernel, initrd: guest.initrd, memoryMib: 512, cmdline: `quiet ${encodeCommand(['sh', '-c', script])}`, nets: [{ tap: 'tvbench0' }] });
  execFileSync('ip', ['addr', 'add', `${HOST_IP}/24`, 'dev', 'tvbench0']);
  execFileSync('ip', ['link', 'set', 'tvbench0', 'up']);
  let log = '';
  const marks = new Map<string, Sample>();
  const sample = (): Sample => {
    const m = vm.metrics();
    const n = m.nets[0]!;
    return { t: performance.now(), rx: n.rxBytes, tx: n.txBytes, cpuNs: m.ioThreadCpuNs };
  };
  let fetched: Promise<void> | undefined;
  vm.console.on('data', (d: Buffer) => {
    log += d.toString('latin1');
    for (const phase of ['PHASE-RX', 'PHASE-TX', 'PHASE-PING', 'PHASE-END']) {
      if (marks.has(phase) || !log.includes(`${phase}\r\n`)) continue;
      marks.set(phase, sample());
      if (phase === 'PHASE-TX') {
        // The host fetches the guest's file, then lets the guest go on (a line on its console).
        fetched = new Promise<void>((resolve, reject) => {
          http.get(`http://${GUEST_IP}:8000/blob`, (res) => { res.resume(); res.on('end', () => { marks.set('TX-DONE', sample()); vm.console.write('\n'); resolve(); }); }).on('error', reject);
        });
      }
    }
  });
  await vm.start();
  const exit = await vm.waitForExit();
  await fetched;
  server.close();
  const [rx0, tx0, txEnd, end] = [marks.get('PHASE-RX'), marks.get('PHASE-TX'), marks.get('TX-DONE'), marks.get('PHASE-END')];
  if (!rx0 || !tx0 || !txEnd || !end) throw new Error(`the guest did not finish (${exit.reason}: ${exit.detail}); console tail: ${log.slice(-1500)}`);
  const rxBytes = tx0.rx - rx0.rx;
  const txBytes = txEnd.tx - tx0.tx;
  const rxMbps = (rxBytes * 8) / 1e6 / ((tx0.t - rx0.t) / 1000);
  const txMbps = (txBytes * 8) / 1e6 / ((txEnd.t - tx0.t) / 1000);
  const rxCpu = (tx0.cpuNs - rx0.cpuNs) / 1e9 / (rxBytes / GB);
  const txCpu = (txEnd.cpuNs - tx0.cpuNs) / 1e9 / (txBytes / GB);
  const rtt = /= [\d.]+\/([\d.]+)\//.exec(log.slice(log.indexOf('PHASE-PING')))?.[1];
  console.log(`guest download ${MIB} MiB (guest RX): ${rxMbps.toFixed(1)} Mbit/s; VMM I/O thread ${rxCpu.toFixed(3)} core-s/GB`);
  console.log(`host fetch from guest ${MIB} MiB (guest TX): ${txMbps.toFixed(1)} Mbit/s; VMM I/O thread ${txCpu.toFixed(3)} core-s/GB`);
  console.log(`ping round trip (avg of 20): ${rtt ?? '?'} ms`);
  console.log(`Firecracker's bar: ≤ ${FIRECRACKER_CORE_S_PER_GB.toFixed(3)} core-s/GB → ratio RX ${(rxCpu / FIRECRACKER_CORE_S_PER_GB).toFixed(2)}, TX ${(txCpu / FIRECRACKER_CORE_S_PER_GB).toFixed(2)}`);
  const qemu = isPvmHost()
    ? 'not run: QEMU cannot boot this guest on PVM hosts (KVM emulation failure on xrstor in early boot; see bench:boot)'
    : 'not run: the QEMU side of bench:net is not written yet';
  console.log(`qemu: ${qemu}`);
  printResult({
    mib: MIB, rx_mbit_s: rxMbps, tx_mbit_s: txMbps, rx_cpu_core_s_per_gb: rxCpu, tx_cpu_core_s_per_gb: txCpu,
    ping_avg_ms: rtt === undefined ? null : Number(rtt),
    ratio_rx_cpu_vs_firecracker_bar: rxCpu / FIRECRACKER_CORE_S_PER_GB, ratio_tx_cpu_vs_firecracker_bar: txCpu / FIRECRACKER_CORE_S_PER_GB,
    net_metrics: vm.metrics().nets[0], qemu,
  });
}

/** Outside: make the namespace, run inside it, always remove it. */
function outer(): void {
  const ns = `tv-bench-net-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, fileURLToPath(import.meta.url), '--inside'], { stdio: 'inherit', env: process.env });
    process.exitCode = r.status ?? 1;
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
  }
}

if (process.argv.includes('--inside')) await inner();
else outer();
