// bench:start — process start → marker from a minimal boot-protocol guest, Typevisor beside QEMU microvm.
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { tempDir } from '../test/helpers/native.js';
import { median, printResult } from './lib/report.js';

const RUNS = 7;
const MARKER = 'GUEST-INIT-REACHED';
const root = resolve(import.meta.dirname, '..', '..');

/** Builds the baseline's minimal guest (shared/research/mini-guest) with binutils. */
function buildMiniGuest(): string {
  const source = [join(root, '..', 'shared', 'research', 'mini-guest', 'mini.S'), join(root, 'bench', 'mini-guest.S')]
    .find((p) => existsSync(p));
  if (!source) throw new Error('mini.S not found');
  const dir = tempDir('typevisor-bench-');
  copyFileSync(source, join(dir, 'mini.S'));
  execFileSync('as', ['--32', '-o', join(dir, 'mini.o'), join(dir, 'mini.S')]);
  execFileSync('ld', ['-m', 'elf_i386', '-Ttext', '0', '--oformat', 'binary', '-o', join(dir, 'mini-bzImage'), join(dir, 'mini.o')]);
  return join(dir, 'mini-bzImage');
}

interface Run { markerMs: number; exitMs: number; peakRssMiB: number }

/** Spawns `cmd` under GNU time (for peak RSS) and measures when MARKER appears on stdout. */
function measure(cmd: string, args: string[]): Promise<Run> {
  return new Promise((resolvePromise, reject) => {
    const rssFile = join(tempDir('typevisor-rss-'), 'rss');
    const t0 = process.hrtime.bigint();
    const child = spawn('/usr/bin/time', ['-f', '%M', '-o', rssFile, cmd, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    let markerMs = -1;
    const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      if (markerMs < 0 && out.includes(MARKER)) markerMs = Number(process.hrtime.bigint() - t0) / 1e6;
    });
    child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    child.on('exit', () => {
      clearTimeout(killer);
      const exitMs = Number(process.hrtime.bigint() - t0) / 1e6;
      if (markerMs < 0) { reject(new Error(`${cmd}: no marker; output ${JSON.stringify(out.slice(-300))} ${err.slice(-500)}`)); return; }
      const kib = Number(readFileSync(rssFile, 'utf8').trim().split('\n').pop());
      resolvePromise({ markerMs, exitMs, peakRssMiB: kib / 1024 });
    });
  });
}

function ensureQemu(): boolean {
  try {
    execFileSync('qemu-system-x86_64', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    console.log('installing qemu-system-x86 from Debian to compare against…');
    try {
      execFileSync('sh', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-x86'], { stdio: 'inherit' });
      return true;
    } catch {
      return false;
    }
  }
}

async function series(cmd: string, args: string[]): Promise<{ marker: number; exit: number; rss: number }> {
  const runs: Run[] = [];
  for (let i = 0; i < RUNS; i++) runs.push(await measure(cmd, args));
  return { marker: median(runs.map((r) => r.markerMs)), exit: median(runs.map((r) => r.exitMs)), rss: median(runs.map((r) => r.peakRssMiB)) };
}

async function main(): Promise<void> {
  const kernel = buildMiniGuest();
  const typevisor = join(root, 'dist', 'src', 'bin', 'typevisor.js');
  const haveQemu = ensureQemu();
  const result: Record<string, number | string> = { runs: RUNS };
  for (const cpus of [1, 2]) {
    const ours = await series(process.execPath, [typevisor, 'run', '--no-reboot', '--quiet', '--kernel', kernel, '--memory', '256M', '--cpus', String(cpus)]);
    console.log(`${cpus} vCPU  typevisor: marker ${ours.marker.toFixed(1)} ms, exit ${ours.exit.toFixed(1)} ms, peak RSS ${ours.rss.toFixed(1)} MiB`);
    result[`typevisor_${cpus}cpu_marker_ms`] = ours.marker;
    result[`typevisor_${cpus}cpu_exit_ms`] = ours.exit;
    result[`typevisor_${cpus}cpu_peak_rss_mib`] = ours.rss;
    if (!haveQemu) continue;
    const qemu = await series('qemu-system-x86_64', ['-M', 'microvm', '-enable-kvm', '-cpu', 'host,-arch-capabilities',
      '-m', '256M', '-smp', String(cpus), '-nodefaults', '-no-user-config', '-nographic', '-serial', 'stdio',
      '-no-reboot', '-kernel', kernel]);
    console.log(`${cpus} vCPU  qemu microvm: marker ${qemu.marker.toFixed(1)} ms, exit ${qemu.exit.toFixed(1)} ms, peak RSS ${qemu.rss.toFixed(1)} MiB`);
    console.log(`${cpus} vCPU  ratio typevisor/qemu: marker ${(ours.marker / qemu.marker).toFixed(2)}, RSS ${(ours.rss / qemu.rss).toFixed(2)} (target ≤ 1.0)`);
    Object.assign(result, {
      [`qemu_${cpus}cpu_marker_ms`]: qemu.marker, [`qemu_${cpus}cpu_exit_ms`]: qemu.exit, [`qemu_${cpus}cpu_peak_rss_mib`]: qemu.rss,
      [`ratio_${cpus}cpu_marker`]: ours.marker / qemu.marker, [`ratio_${cpus}cpu_rss`]: ours.rss / qemu.rss,
    });
  }
  printResult(result);
}

await main();
