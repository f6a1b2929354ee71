// The peer side of the benchmarks: QEMU booting the same guest with a command (the default guest's
// command protocol), its console collected, with a deadline — on nested PVM hosts QEMU dies in
// early boot (KVM emulation failure) and then waits forever, so the result says how it ended.
import { spawn, execFileSync } from 'node:child_process';
import { encodeCommand } from '../../src/guest/command-protocol.js';

export interface QemuRun {
  /** The console (serial) output; the guest command's markers are in it when it got that far. */
  console: string;
  /** ms from start to each console line matching a watched marker. */
  marks: Map<string, number>;
  totalMs: number;
  /** 'finished' (the command's exit marker seen), or why not. */
  outcome: 'finished' | 'died: KVM emulation failure' | 'timed out' | 'not installed' | `exited ${string}`;
  /** The last kernel line (where it stopped). */
  lastKernelLine: string;
}

function installed(): boolean {
  try {
    execFileSync('qemu-system-x86_64', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** QEMU is there, or is installed now from Debian's qemu-system-x86 (as root, with apt-get). */
export function qemuInstalled(): boolean {
  if (installed()) return true;
  if (process.getuid?.() !== 0) return false;
  console.log('installing Debian\'s qemu-system-x86 for the peer side of the benchmark');
  try {
    execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', 'qemu-system-x86'], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  } catch {
    return false;
  }
  return installed();
}

/** Boots `guest` in QEMU microvm (PCIe, ACPI) with `devices` and runs `script` in it; `markers` are console lines to time. */
export function runQemu(guest: { kernel: string; initrd?: string | undefined }, opts: { script: string; devices: string[]; markers: string[]; memoryMib?: number; timeoutMs: number }): Promise<QemuRun> {
  if (!qemuInstalled()) return Promise.resolve({ console: '', marks: new Map(), totalMs: 0, outcome: 'not installed', lastKernelLine: '' });
  return new Promise((resolve) => {
    const t0 = performance.now();
    const args = ['-M', 'microvm,acpi=on,pcie=on', '-enable-kvm', '-cpu', 'host,-arch-capabilities', '-m', `${opts.memoryMib ?? 512}M`, '-smp', '1',
      '-nodefaults', '-no-user-config', '-nographic', '-serial', 'stdio', '-no-reboot', ...opts.devices,
      '-kernel', guest.kernel, ...(guest.initrd ? ['-initrd', guest.initrd] : []),
      '-append', `console=ttyS0 panic=-1 quiet ${encodeCommand(['sh', '-c', opts.script])}`];
    const child = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const marks = new Map<string, number>();
    let finished = false;
    let dead = false;
    const onData = (d: Buffer): void => {
      out += d.toString('latin1');
      for (const m of opts.markers) if (!marks.has(m) && out.includes(`${m}\r\n`)) marks.set(m, performance.now() - t0);
      if (!finished && /TYPEVISOR-EXIT \d+/.test(out)) finished = true;
      // A dead VM (KVM could not emulate an instruction) never ends by itself: stop waiting.
      if (!dead && /KVM internal error/.test(out)) { dead = true; setTimeout(() => child.kill('SIGKILL'), 500); }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      const lastKernelLine = out.trim().split('\n').filter((l) => /^\[ *\d/.test(l)).at(-1)?.trim() ?? '';
      const outcome: QemuRun['outcome'] = finished ? 'finished'
        : /KVM internal error|emulation failure/i.test(out) ? 'died: KVM emulation failure'
          : signal === 'SIGKILL' ? 'timed out' : `exited ${signal ?? String(status)}`;
      resolve({ console: out, marks, totalMs: performance.now() - t0, outcome, lastKernelLine });
    });
  });
}
