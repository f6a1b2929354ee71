// bench:pause — pause and resume latency of a running 2-vCPU VM (median of 100 cycles), Typevisor
// beside QEMU (QMP stop/cont) on the same spinning guest, and our host CPU time per cycle.
import { execFileSync, spawn } from 'node:child_process';
import { threadCpuNs } from '../src/sys/thread-cpu.js';
import { createConnection, type Socket } from 'node:net';
import { join, resolve } from 'node:path';
import { tempDir } from '../test/helpers/native.js';
import { Vm } from '../src/vmm/vm.js';
import { median, printResult } from './lib/report.js';

const CYCLES = 100;
const MARKER = 'GUEST-SPIN-READY';
const root = resolve(import.meta.dirname, '..', '..');

/** bench/mini-guest.S, SPIN variant: prints the marker, then the boot vCPU spins in guest mode (the other waits for SIPI). */
function buildSpinGuest(): string {
  const dir = tempDir('typevisor-bench-');
  execFileSync('as', ['--32', '--defsym', 'SPIN=1', '-o', join(dir, 'spin.o'), join(root, 'bench', 'mini-guest.S')]);
  execFileSync('ld', ['-m', 'elf_i386', '-Ttext', '0', '--oformat', 'binary', '-o', join(dir, 'spin-bzImage'), join(dir, 'spin.o')]);
  return join(dir, 'spin-bzImage');
}

const ms = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;


async function ours(kernel: string): Promise<{ pause: number; resume: number; cpuUsPerCycle: number }> {
  const vm = await Vm.create({ kernel, vcpus: 2, memoryMib: 256 });
  let out = '';
  vm.console.on('data', (d: Buffer) => { out += d.toString('latin1'); });
  await vm.start();
  const t = Date.now();
  while (!out.includes(MARKER)) {
    if (Date.now() - t > 30_000) throw new Error(`typevisor: no marker; console ${JSON.stringify(out)}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  const pauses: number[] = [];
  const resumes: number[] = [];
  let cpuNs = 0;
  for (let i = 0; i < CYCLES; i++) {
    // The main thread's CPU time only: the VMM's cost, not the spinning guest's.
    const c0 = threadCpuNs();
    let t0 = process.hrtime.bigint();
    await vm.pause();
    pauses.push(ms(t0));
    t0 = process.hrtime.bigint();
    vm.resume();
    resumes.push(ms(t0));
    cpuNs += threadCpuNs() - c0;
    // Let the guest run a little between cycles, as QEMU's does while its QMP reply travels.
    await new Promise((r) => setTimeout(r, 1));
  }
  await vm.stop();
  return { pause: median(pauses), resume: median(resumes), cpuUsPerCycle: cpuNs / 1000 / CYCLES };
}

/** One QMP command → its return (events in between are skipped). */
function qmpClient(sock: Socket): (cmd: string) => Promise<void> {
  let buf = '';
  const waiters: (() => void)[] = [];
  sock.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.includes('"return"') || line.includes('"error"')) waiters.shift()?.();
    }
  });
  return (cmd) => new Promise<void>((res) => {
    waiters.push(res);
    sock.write(`${JSON.stringify({ execute: cmd })}\n`);
  });
}

async function qemu(kernel: string): Promise<{ pause: number; resume: number } | string> {
  try {
    execFileSync('qemu-system-x86_64', ['--version'], { stdio: 'ignore' });
  } catch {
    return 'qemu-system-x86_64 not installed';
  }
  const sockPath = join(tempDir('typevisor-qmp-'), 'qmp.sock');
  const child = spawn('qemu-system-x86_64', ['-M', 'microvm', '-enable-kvm', '-cpu', 'host,-arch-capabilities', '-m', '256M', '-smp', '2',
    '-nodefaults', '-no-user-config', '-nographic', '-serial', 'stdio', '-kernel', kernel, '-qmp', `unix:${sockPath},server=on,wait=off`],
  { stdio: ['ignore', 'pipe', 'pipe'] });
  try {
    let out = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString('latin1'); });
    const t = Date.now();
    while (!out.includes(MARKER)) {
      if (Date.now() - t > 30_000 || child.exitCode !== null) return `QEMU did not reach the marker (${JSON.stringify(out.slice(-200))})`;
      await new Promise((r) => setTimeout(r, 5));
    }
    const sock = createConnection(sockPath);
    await new Promise((r) => sock.once('connect', r));
    const send = qmpClient(sock);
    // The greeting has no "return"; qmp_capabilities' reply is the first one.
    await send('qmp_capabilities');
    const pauses: number[] = [];
    const resumes: number[] = [];
    for (let i = 0; i < CYCLES; i++) {
      let t0 = process.hrtime.bigint();
      await send('stop');
      pauses.push(ms(t0));
      t0 = process.hrtime.bigint();
      await send('cont');
      resumes.push(ms(t0));
      await new Promise((r) => setTimeout(r, 1));
    }
    sock.destroy();
    return { pause: median(pauses), resume: median(resumes) };
  } finally {
    child.kill('SIGKILL');
  }
}

async function main(): Promise<void> {
  const kernel = buildSpinGuest();
  const t = await ours(kernel);
  console.log(`typevisor (library call): pause ${t.pause.toFixed(3)} ms, resume ${t.resume.toFixed(3)} ms (median of ${CYCLES}); main-thread CPU ${t.cpuUsPerCycle.toFixed(1)} µs per pause+resume`);
  const result: Record<string, number | string> = {
    cycles: CYCLES, vcpus: 2, typevisor_pause_ms: t.pause, typevisor_resume_ms: t.resume, typevisor_cpu_us_per_cycle: t.cpuUsPerCycle,
  };
  const q = await qemu(kernel);
  if (typeof q === 'string') {
    console.log(`qemu: ${q}`);
    result.qemu = q;
  } else {
    console.log(`qemu (QMP round trip): pause ${q.pause.toFixed(3)} ms, resume ${q.resume.toFixed(3)} ms`);
    console.log(`ratio typevisor/qemu: pause ${(t.pause / q.pause).toFixed(2)}, resume ${(t.resume / q.resume).toFixed(2)} (QEMU's includes a QMP socket round trip)`);
    Object.assign(result, { qemu_pause_ms: q.pause, qemu_resume_ms: q.resume, ratio_pause: t.pause / q.pause, ratio_resume: t.resume / q.resume });
  }
  printResult(result);
}

await main();
