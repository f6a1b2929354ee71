// Ctrl-C (SIGINT to the CLI alone, as a supervisor or `kill` sends it) during a guest build and
// during a run: the CLI ends promptly, leaves no process behind and nothing half-built in the cache.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { kvmSkip } from '../helpers/kvm.js';
import { TYPEVISOR_BIN } from '../helpers/cli.js';
import { tempDir } from '../helpers/native.js';

interface Running {
  child: ChildProcess;
  stderr(): string;
  waitFor(pattern: RegExp, ms: number): Promise<void>;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
}

function start(args: string[], env: NodeJS.ProcessEnv = process.env): Running {
  const child = spawn(process.execPath, [TYPEVISOR_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let err = '';
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  child.stdout.resume();
  return {
    child,
    stderr: () => err,
    waitFor: async (pattern, ms) => {
      const t0 = Date.now();
      while (!pattern.test(err)) {
        if (Date.now() - t0 > ms || child.exitCode !== null) throw new Error(`no ${pattern} on stderr: ${err.slice(-1500)}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    },
    exit: new Promise((resolve) => child.on('close', (code, signal) => resolve({ code, signal, at: Date.now() }))),
  };
}

/** Processes whose command line mentions `text` (other than this test's own). */
function processesMentioning(text: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmd = readFileSync(`/proc/${pid}/cmdline`, 'latin1').replace(/\0/g, ' ');
      if (cmd.includes(text) && Number(pid) !== process.pid) found.push(`${pid}: ${cmd.slice(0, 120)}`);
    } catch {
      // Gone meanwhile.
    }
  }
  return found;
}

test('Ctrl-C during the guest build: the build stops at once, its temporary files go, nothing enters the cache', { timeout: 20 * 60_000 }, async () => {
  const cache = tempDir('typevisor-cache-');
  const run = start(['guest', 'build'], { ...process.env, XDG_CACHE_HOME: cache });
  // Interrupt while make runs: the case where only a signal to the whole build stops it at once.
  await run.waitFor(/building vmlinux/, 15 * 60_000);
  await new Promise((r) => setTimeout(r, 3000));
  const sent = Date.now();
  run.child.kill('SIGINT');
  const { code, at } = await run.exit;
  console.log(`guest build interrupted: exited ${code} after ${((at - sent) / 1000).toFixed(1)} s`);
  assert.notEqual(code, 0);
  assert.ok(at - sent < 30_000, `took ${at - sent} ms to stop`);
  assert.match(run.stderr(), /interrupted/);
  await new Promise((r) => setTimeout(r, 1000));
  assert.deepEqual(processesMentioning(cache), [], 'no process of the build is left');
  for (const part of ['kernel', 'guest']) {
    const left = existsSync(join(cache, 'typevisor', part)) ? readdirSync(join(cache, 'typevisor', part)) : [];
    assert.deepEqual(left.filter((f) => !f.startsWith('.lock-')), [], `the ${part} cache holds only lock files: ${left.join(' ')}`);
  }
});

test('Ctrl-C during a run: the VM stops, the CLI exits 130 within seconds', { skip: kvmSkip, timeout: 20 * 60_000 }, async () => {
  const run = start(['run', '--', 'sleep', '1000']);
  await run.waitFor(/Linux version/, 15 * 60_000);
  const sent = Date.now();
  run.child.kill('SIGINT');
  const { code, at } = await run.exit;
  assert.equal(code, 130, run.stderr().slice(-1000));
  assert.ok(at - sent < 10_000, `took ${at - sent} ms to stop`);
  assert.match(run.stderr(), /stopped by the host/);
  assert.deepEqual(processesMentioning(`${TYPEVISOR_BIN} run`), []);
});
