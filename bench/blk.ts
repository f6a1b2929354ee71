// bench:blk — virtio-blk on the default guest: sequential read and write (dd) and 4 KiB random-read
// IOPS (O_DIRECT, the agent's randread: busybox has no fio), as the device sees them and as the
// guest reports them, and the VMM's host CPU time per GiB moved and per request (the I/O worker
// thread's schedstat) — beside QEMU's virtio-blk-pci (aio=threads) on the same image and guest
// in the same run; where QEMU cannot boot the guest (PVM hosts) its failure is reported.
import { writeFileSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../test/helpers/native.js';
import { ensureDefaultGuest } from '../src/guest/default-guest.js';
import { encodeCommand } from '../src/guest/command-protocol.js';
import { Vm } from '../src/vmm/vm.js';
import { printResult } from './lib/report.js';
import { runQemu } from './lib/qemu.js';

// Small by default: on PVM hosts the guest kernel's own copying is emulated and takes minutes per 100 MiB.
const MIB = Number(process.env['BENCH_MIB'] ?? 16);
const RANDOM_READS = Number(process.env['BENCH_IOS'] ?? 2000);
const GiB = 2 ** 30;
/** Firecracker's published bar: 1 GiB/s at ≤ 70 % of one core. */
const FIRECRACKER_CORE_S_PER_GIB = 0.7;

interface Sample { t: number; readBytes: number; writeBytes: number; requests: number; cpuNs: number }
const PHASES = ['PHASE-READ', 'PHASE-WRITE', 'PHASE-RANDREAD', 'PHASE-END'];

async function main(): Promise<void> {
  const guest = await ensureDefaultGuest((l) => console.log(l));
  const image = join(tempDir('typevisor-bench-'), 'bench.img');
  writeFileSync(image, '');
  truncateSync(image, 2 * MIB * 2 ** 20);
  const script = [
    // A first pass is not measured: V8 compiles the request path during the first few hundred requests.
    `dd if=/dev/vda of=/dev/null bs=1M count=${MIB} iflag=direct 2>/dev/null`, `typevisor-agent randread /dev/vda 4096 500 >/dev/null`,
    `dd if=/dev/zero of=/dev/vda bs=1M count=${MIB} seek=${MIB} oflag=direct 2>/dev/null`,
    'echo PHASE-READ', `dd if=/dev/vda of=/dev/null bs=1M count=${MIB} iflag=direct 2>/dev/null`,
    'echo PHASE-WRITE', `dd if=/dev/zero of=/dev/vda bs=1M count=${MIB} oflag=direct conv=fsync 2>/dev/null`,
    'echo PHASE-RANDREAD', `typevisor-agent randread /dev/vda 4096 ${RANDOM_READS}`,
    'echo PHASE-END',
  ].join('; ');
  const vm = await Vm.create({ kernel: guest.kernel, initrd: guest.initrd, memoryMib: 512, cmdline: `quiet ${encodeCommand(['sh', '-c', script])}`, disks: [{ path: image }] });
  let log = '';
  const marks = new Map<string, Sample>();
  const sample = (): Sample => {
    const m = vm.metrics();
    const d = m.disks[0]!;
    return { t: performance.now(), readBytes: d.readBytes, writeBytes: d.writeBytes, requests: d.requests, cpuNs: m.ioThreadCpuNs };
  };
  vm.console.on('data', (d: Buffer) => {
    log += d.toString('latin1');
    for (const phase of PHASES) if (!marks.has(phase) && log.includes(`${phase}\r\n`)) marks.set(phase, sample());
  });
  await vm.start();
  const exit = await vm.waitForExit();
  const [r0, w0, rr0, end] = PHASES.map((p) => marks.get(p));
  if (!r0 || !w0 || !rr0 || !end) throw new Error(`the guest did not finish (${exit.reason}: ${exit.detail}); console tail: ${log.slice(-1500)}`);
  const rate = (bytes: number, ms: number): number => bytes / 2 ** 20 / (ms / 1000);
  const readMiBs = rate(w0.readBytes - r0.readBytes, w0.t - r0.t);
  const writeMiBs = rate(rr0.writeBytes - w0.writeBytes, rr0.t - w0.t);
  const readCpu = (w0.cpuNs - r0.cpuNs) / 1e9 / ((w0.readBytes - r0.readBytes) / GiB);
  const writeCpu = (rr0.cpuNs - w0.cpuNs) / 1e9 / ((rr0.writeBytes - w0.writeBytes) / GiB);
  const readKib = (w0.readBytes - r0.readBytes) / 1024 / (w0.requests - r0.requests);
  const writeKib = (rr0.writeBytes - w0.writeBytes) / 1024 / (rr0.requests - w0.requests);
  const ios = end.requests - rr0.requests;
  const deviceIops = ios / ((end.t - rr0.t) / 1000);
  const usPerIo = (end.cpuNs - rr0.cpuNs) / 1e3 / ios;
  const guestIops = Number(/randread .*: (\d+) IOPS/.exec(log)?.[1] ?? NaN);
  console.log(`sequential read  ${MIB} MiB: ${readMiBs.toFixed(1)} MiB/s at the device; VMM I/O thread ${readCpu.toFixed(3)} core-s/GiB`);
  console.log(`sequential write ${MIB} MiB: ${writeMiBs.toFixed(1)} MiB/s at the device; VMM I/O thread ${writeCpu.toFixed(3)} core-s/GiB`);
  console.log(`average request: read ${readKib.toFixed(1)} KiB, write ${writeKib.toFixed(1)} KiB (the guest's block layer decides)`);
  console.log(`4 KiB random read (O_DIRECT), ${ios} requests: ${deviceIops.toFixed(0)} IOPS at the device, ${guestIops} in the guest; VMM I/O thread ${usPerIo.toFixed(1)} µs per request`);
  console.log(`Firecracker's bar: ≤ ${FIRECRACKER_CORE_S_PER_GIB} core-s/GiB → ratio read ${(readCpu / FIRECRACKER_CORE_S_PER_GIB).toFixed(3)}, write ${(writeCpu / FIRECRACKER_CORE_S_PER_GIB).toFixed(3)}`);
  const result: Record<string, unknown> = {
    mib: MIB, read_mib_s: readMiBs, write_mib_s: writeMiBs, read_cpu_core_s_per_gib: readCpu, write_cpu_core_s_per_gib: writeCpu,
    read_avg_request_kib: readKib, write_avg_request_kib: writeKib, randread_4k_device_iops: deviceIops, randread_4k_guest_iops: guestIops, randread_cpu_us_per_request: usPerIo,
    ratio_read_cpu_vs_firecracker_bar: readCpu / FIRECRACKER_CORE_S_PER_GIB, ratio_write_cpu_vs_firecracker_bar: writeCpu / FIRECRACKER_CORE_S_PER_GIB,
  };
  // The peer: QEMU's virtio-blk-pci with a thread pool, on the same image and guest.
  const q = await runQemu(guest, {
    script, markers: PHASES, timeoutMs: 600_000,
    devices: ['-drive', `if=none,id=d0,file=${image},format=raw,aio=threads,cache=none`, '-device', 'virtio-blk-pci,drive=d0'],
  });
  if (q.outcome === 'finished') {
    const at = (p: string): number => q.marks.get(p)!;
    const qRead = MIB / ((at('PHASE-WRITE') - at('PHASE-READ')) / 1000);
    const qWrite = MIB / ((at('PHASE-RANDREAD') - at('PHASE-WRITE')) / 1000);
    const qIops = Number(/randread .*: (\d+) IOPS/.exec(q.console)?.[1] ?? NaN);
    Object.assign(result, { qemu: 'finished', qemu_read_mib_s: qRead, qemu_write_mib_s: qWrite, qemu_randread_4k_guest_iops: qIops,
      ratio_read_throughput: readMiBs / qRead, ratio_write_throughput: writeMiBs / qWrite, ratio_randread_iops: guestIops / qIops });
    console.log(`qemu: read ${qRead.toFixed(1)} MiB/s, write ${qWrite.toFixed(1)} MiB/s, ${qIops} IOPS → ratios ${(readMiBs / qRead).toFixed(2)}, ${(writeMiBs / qWrite).toFixed(2)}, ${(guestIops / qIops).toFixed(2)}`);
  } else {
    Object.assign(result, { qemu: q.outcome, qemu_ended_s: q.totalMs / 1000, qemu_last_kernel_line: q.lastKernelLine });
    console.log(`qemu: ${q.outcome} after ${(q.totalMs / 1000).toFixed(1)} s (last kernel line: ${q.lastKernelLine || 'none'}) — no ratio on this host`);
  }
  printResult(result);
}

await main();
