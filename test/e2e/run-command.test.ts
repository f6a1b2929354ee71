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

/** The CLI on a real pseudo-terminal (util-linux `script`), as a user's terminal would give it. */
function ptySession(args: string): { send(text: string): void; waitFor(pattern: RegExp, ms: number): Promise<void>; exited: Promise<number | null>; screen(): string; kill(): void } {
  const child = spawn('script', ['-qefc', `${process.execPath} ${TYPEVISOR_BIN} ${args}`, '/dev/null'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let screen = '';
  child.stdout.on('data', (d: Buffer) => { screen += d.toString('latin1'); });
  return {
    send: (text) => child.stdin.write(text),
    waitFor: async (pattern, ms) => {
      const t0 = Date.now();
      while (!pattern.test(screen)) {
        if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${pattern}; screen: ${JSON.stringify(screen.slice(-500))}`);
        await new Promise((r) => setTimeout(r, 200));
      }
    },
    exited: new Promise<number | null>((resolve) => child.on('close', resolve)),
    screen: () => screen,
    kill: () => child.kill('SIGKILL'),
  };
}

// busybox asks for the cursor position (ESC [6n) after its prompt
const PROMPT = new RegExp(`# (${String.fromCharCode(27)}\\[6n)?$`);

test('interactive console through a pseudo-terminal: echo hi, reboot boots the guest again, poweroff exits 0', { skip: kvmSkip, timeout: 2 * BOOT_MS }, async () => {
  const pty = ptySession('run --quiet');
  try {
    await pty.waitFor(/TYPEVISOR-READY/, BOOT_MS - 60_000);
    await pty.waitFor(PROMPT, 30_000);
    pty.send('echo h""i\r');
    await pty.waitFor(/\nhi\r*\n/, 30_000);
    pty.send('reboot\r');
    await pty.waitFor(/the guest reset; booting it again/, 60_000);
    await pty.waitFor(/TYPEVISOR-READY[^]*TYPEVISOR-READY/, BOOT_MS - 60_000);
    await pty.waitFor(PROMPT, 30_000);
    pty.send('poweroff\r');
    assert.equal(await pty.exited, 0, pty.screen().slice(-500));
  } finally {
    pty.kill();
  }
});

test('interactive with --no-reboot: a guest reboot ends the session with status 0, reason reset', { skip: kvmSkip, timeout: BOOT_MS }, async () => {
  const pty = ptySession('run --quiet --no-reboot');
  try {
    await pty.waitFor(/TYPEVISOR-READY/, BOOT_MS - 60_000);
    await pty.waitFor(PROMPT, 30_000);
    pty.send('reboot\r');
    assert.equal(await pty.exited, 0, pty.screen().slice(-500));
    assert.match(pty.screen(), /the guest reset \(reason: reset\); not rebooting \(--no-reboot\)/);
  } finally {
    pty.kill();
  }
});
