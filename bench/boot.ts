// bench:boot — `typevisor run -- true` and time to the guest's init marker, beside QEMU microvm on the same kernel and initramfs.
import { spawn, execFileSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { ensureDefaultGuest } from '../src/guest/default-guest.js';
import { median, printResult } from './lib/report.js';

const RUNS = Number(process.env['BENCH_RUNS'] ?? 3);
// On PVM hosts QEMU stops early on a KVM emulation failure and then waits forever; 90 s is ample.
const QEMU_TIMEOUT_MS = 90_000;
const root = resolve(import.meta.dirname, '..', '..');
const typevisor = join(root, 'dist', 'src', 'bin', 'typevisor.js');

interface Timed { totalMs: number; markerMs: number; status: number | null; tail: string }

/** Runs a command, noting when `marker` first appears in its output (stdout and stderr together). */
function timed(cmd: string, args: string[], marker: RegExp, timeoutMs: number): Promise<Timed> {
  return new Promise((resolvePromise) => {
    const t0 = process.hrtime.bigint();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let markerMs = -1;
    const onData = (d: Buffer): void => {
      out += d.toString('latin1');
      if (markerMs < 0 && marker.test(out)) markerMs = Number(process.hrtime.bigint() - t0) / 1e6;
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (status) => {
      clearTimeout(timer);
      resolvePromise({ totalMs: Number(process.hrtime.bigint() - t0) / 1e6, markerMs, status, tail: out.slice(-600) });
    });
  });
}

/** `typevisor run --cpus N -- true`, RUNS times; QEMU microvm with `-smp N` once, on the same kernel and initramfs. */
async function row(cpus: number, guest: { kernel: string; initrd?: string | undefined }, result: Record<string, unknown>): Promise<void> {
  const ours: Timed[] = [];
  for (let i = 0; i < RUNS; i++) {
    // "Run /init" (in the boot log on stderr) is the kernel handing over to user space.
    const r = await timed(process.execPath, [typevisor, 'run', '--cpus', String(cpus), '--', 'true'], /Run \/init as init process/, 600_000);
    if (r.status !== 0) throw new Error(`typevisor run -- true failed (${r.status}): ${r.tail}`);
    console.log(`${cpus} vCPU  typevisor run -- true: init marker ${(r.markerMs / 1000).toFixed(1)} s, exit ${(r.totalMs / 1000).toFixed(1)} s`);
    ours.push(r);
  }
  const key = `${cpus}cpu`;
  const marker = median(ours.map((r) => r.markerMs)) / 1000;
  result[`typevisor_${key}_init_marker_s`] = marker;
  result[`typevisor_${key}_run_true_s`] = median(ours.map((r) => r.totalMs)) / 1000;
  try {
    execFileSync('qemu-system-x86_64', ['--version'], { stdio: 'ignore' });
  } catch {
    result['qemu'] = 'not installed';
    return;
  }
  const q = await timed('qemu-system-x86_64', ['-M', 'microvm,acpi=on', '-enable-kvm', '-cpu', 'host,-arch-capabilities', '-m', '256M',
    '-smp', String(cpus), '-nodefaults', '-no-user-config', '-nographic', '-serial', 'stdio', '-no-reboot',
    '-kernel', guest.kernel, '-initrd', guest.initrd ?? '', '-append', 'console=ttyS0 panic=-1 typevisor.cmd=dHJ1ZQ=='],
  /Run \/init as init process/, QEMU_TIMEOUT_MS);
  const lastLine = q.tail.trim().split('\n').filter((l) => /^\[ *\d/.test(l)).at(-1) ?? q.tail.trim().split('\n').at(-1);
  if (q.markerMs >= 0) {
    result[`qemu_${key}_init_marker_s`] = q.markerMs / 1000;
    result[`ratio_${key}_init_marker`] = marker / (q.markerMs / 1000);
    console.log(`${cpus} vCPU  qemu microvm: init marker ${(q.markerMs / 1000).toFixed(1)} s; ratio typevisor/qemu ${(marker / (q.markerMs / 1000)).toFixed(2)}`);
  } else {
    const died = /KVM internal error|emulation failure/i.test(q.tail);
    result[`qemu_${key}`] = died ? 'died: KVM emulation failure' : 'no init marker';
    result[`qemu_${key}_ended_s`] = q.totalMs / 1000;
    result[`qemu_${key}_last_kernel_line`] = lastLine;
    console.log(`${cpus} vCPU  qemu microvm: ${result[`qemu_${key}`] as string} after ${(q.totalMs / 1000).toFixed(1)} s; last kernel line: ${lastLine}`);
  }
}

async function main(): Promise<void> {
  const guest = await ensureDefaultGuest((l) => console.log(l));
  const result: Record<string, unknown> = { runs: RUNS };
  for (const cpus of [1, 2]) await row(cpus, guest, result);
  printResult(result);
}

await main();
