// bench:blk — virtio-blk sequential read and write on the default guest: throughput as the device
// sees it and as the guest's dd reports it, and the VMM's host CPU time per GiB moved (the I/O
// worker thread's schedstat), beside QEMU's virtio-blk where QEMU can boot the guest.
import { writeFileSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../test/helpers/native.js';
import { ensureDefaultGuest } from '../src/guest/default-guest.js';
import { encodeCommand } from '../src/guest/command-protocol.js';
import { isPvmHost } from '../src/kvm/host-kind.js';
import { Vm } from '../src/vmm/vm.js';
import { printResult } from './lib/report.js';

// Small by default: on PVM hosts the guest kernel's own copying is emulated and takes minutes per 100 MiB.
const MIB = Number(process.env['BENCH_MIB'] ?? 16);
const GiB = 2 ** 30;
/** Firecracker's published bar: 1 GiB/s at ≤ 70 % of one core. */
const FIRECRACKER_CORE_S_PER_GIB = 0.7;

interface Sample { t: number; readBytes: number; writeBytes: number; cpuNs: number }

async function main(): Promise<void> {
  const guest = await ensureDefaultGuest((l) => console.log(l));
  const image = join(tempDir('typevisor-bench-'), 'bench.img');
  writeFileSync(image, '');
  truncateSync(image, 2 * MIB * 2 ** 20);
  const script = [
    'echo PHASE-READ', `dd if=/dev/vda of=/dev/null bs=1M count=${MIB} 2>&1 | tail -1`,
    'echo PHASE-WRITE', `dd if=/dev/zero of=/dev/vda bs=1M count=${MIB} conv=fsync 2>&1 | tail -1`,
    'echo PHASE-END',
  ].join('; ');
  const vm = await Vm.create({ kernel: guest.kernel, initrd: guest.initrd, memoryMib: 512, cmdline: `quiet ${encodeCommand(['sh', '-c', script])}`, disks: [{ path: image }] });
  let log = '';
  const marks = new Map<string, Sample>();
  const sample = (): Sample => {
    const m = vm.metrics();
    const d = m.disks[0]!;
    return { t: performance.now(), readBytes: d.readBytes, writeBytes: d.writeBytes, cpuNs: m.ioThreadCpuNs };
  };
  vm.console.on('data', (d: Buffer) => {
    log += d.toString('latin1');
    for (const phase of ['PHASE-READ', 'PHASE-WRITE', 'PHASE-END']) if (!marks.has(phase) && log.includes(`${phase}\r\n`)) marks.set(phase, sample());
  });
  await vm.start();
  const exit = await vm.waitForExit();
  const [r0, w0, end] = [marks.get('PHASE-READ'), marks.get('PHASE-WRITE'), marks.get('PHASE-END')];
  if (!r0 || !w0 || !end) throw new Error(`the guest did not finish (${exit.reason}: ${exit.detail}); console tail: ${log.slice(-1500)}`);
  const guestLines = log.split('\n').filter((l) => /copied/.test(l)).map((l) => l.trim());
  const rate = (bytes: number, ms: number): number => bytes / 2 ** 20 / (ms / 1000);
  const readMiBs = rate(w0.readBytes - r0.readBytes, w0.t - r0.t);
  const writeMiBs = rate(end.writeBytes - w0.writeBytes, end.t - w0.t);
  const readCpu = (w0.cpuNs - r0.cpuNs) / 1e9 / ((w0.readBytes - r0.readBytes) / GiB);
  const writeCpu = (end.cpuNs - w0.cpuNs) / 1e9 / ((end.writeBytes - w0.writeBytes) / GiB);
  console.log(`guest dd: ${guestLines.join(' | ')}`);
  console.log(`sequential read  ${MIB} MiB: ${readMiBs.toFixed(1)} MiB/s at the device; VMM I/O thread ${readCpu.toFixed(3)} core-s/GiB`);
  console.log(`sequential write ${MIB} MiB: ${writeMiBs.toFixed(1)} MiB/s at the device; VMM I/O thread ${writeCpu.toFixed(3)} core-s/GiB`);
  console.log(`Firecracker's bar: ≤ ${FIRECRACKER_CORE_S_PER_GIB} core-s/GiB → ratio read ${(readCpu / FIRECRACKER_CORE_S_PER_GIB).toFixed(3)}, write ${(writeCpu / FIRECRACKER_CORE_S_PER_GIB).toFixed(3)}`);
  const qemu = isPvmHost()
    ? 'not run: QEMU cannot boot this guest on PVM hosts (KVM emulation failure on xrstor in early boot; see bench:boot)'
    : 'not run: the QEMU side of bench:blk is not written yet';
  console.log(`qemu: ${qemu}`);
  printResult({
    mib: MIB, read_mib_s: readMiBs, write_mib_s: writeMiBs, read_cpu_core_s_per_gib: readCpu, write_cpu_core_s_per_gib: writeCpu,
    ratio_read_cpu_vs_firecracker_bar: readCpu / FIRECRACKER_CORE_S_PER_GIB, ratio_write_cpu_vs_firecracker_bar: writeCpu / FIRECRACKER_CORE_S_PER_GIB,
    guest_dd: guestLines, qemu,
  });
}

await main();
