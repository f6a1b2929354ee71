// End-to-end through the real CLI on real KVM: the default guest runs commands and an interactive console.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { kvmSkip } from '../helpers/kvm.js';
import { runCli, TYPEVISOR_BIN } from '../helpers/cli.js';
import { ensureDefaultGuest } from '../../src/guest/default-guest.js';

const BOOT_MS = 240_000;

test('the default guest is built (or found in the cache) and verified', { skip: kvmSkip, timeout: 30 * 60_000 }, async () => {
  const assets = await ensureDefaultGuest((l) => console.log(`guest build: ${l}`));
  assert.match(assets.kernel, /vmlinux$/);
});

test('run -- CMD: output on stdout, the boot log apart, the exit status, memory as asked', { skip: kvmSkip, timeout: BOOT_MS }, async () => {
  const r = await runCli(['run', '--memory', '300M', '--', 'sh', '-c', 'uname -r; grep MemTotal /proc/meminfo; echo "a  b" >&2; exit 7'],
    { timeoutMs: BOOT_MS });
  console.log(`run -- sh -c ...: ${r.seconds.toFixed(1)} s`);
  assert.equal(r.status, 7, r.stderr.slice(-2000));
  const [release, meminfo, spaced] = r.stdout.split('\n');
  assert.equal(release, '6.1.192');
  const kib = Number(/MemTotal:\s+(\d+) kB/.exec(meminfo ?? '')?.[1]);
  assert.ok(kib > 250_000 && kib <= 300 * 1024, `MemTotal ${kib} kB for --memory 300M`);
  assert.equal(spaced, 'a  b');
  assert.match(r.stderr, /Linux version 6\.1\.192/);
});

test('run --quiet -- a command the guest does not have: exit 127, no boot log', { skip: kvmSkip, timeout: BOOT_MS }, async () => {
  const r = await runCli(['run', '--quiet', '--', 'no-such-command', '--flag'], { timeoutMs: BOOT_MS });
  assert.equal(r.status, 127, r.stderr.slice(-2000));
  assert.doesNotMatch(r.stderr, /Linux version/);
});

test('interactive console through a pseudo-terminal: echo hi, then poweroff exits 0', { skip: kvmSkip, timeout: BOOT_MS }, async () => {
  // util-linux `script` gives the CLI a real pty, as a user's terminal would.
  const child = spawn('script', ['-qefc', `${process.execPath} ${TYPEVISOR_BIN} run --quiet`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let screen = '';
  child.stdout.on('data', (d: Buffer) => { screen += d.toString('latin1'); });
  const waitFor = async (pattern: RegExp, ms: number): Promise<void> => {
    const t0 = Date.now();
    while (!pattern.test(screen)) {
      if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${pattern}; screen: ${JSON.stringify(screen.slice(-500))}`);
      await new Promise((r) => setTimeout(r, 200));
    }
  };
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  try {
    await waitFor(/TYPEVISOR-READY/, BOOT_MS - 60_000);
    // busybox asks for the cursor position (ESC [6n) after its prompt
    await waitFor(new RegExp(`# (${String.fromCharCode(27)}\\[6n)?$`), 30_000);
    child.stdin.write('echo h""i\r');
    await waitFor(/\nhi\r*\n/, 30_000);
    child.stdin.write('poweroff\r');
    assert.equal(await exited, 0, screen.slice(-500));
  } finally {
    child.kill('SIGKILL');
  }
});
