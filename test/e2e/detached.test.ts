// End-to-end on real KVM through the CLI: `run --detach` starts a named VM in the background;
// `exec` runs commands in it (status, streamed output, stdin with -i) through the guest agent; `ps`
// and `logs` show it; free page reporting gives the memory a guest freed back to the host; a guest
// reboot ends an open exec cleanly and the VM comes back under the same name; `stop` shuts it down
// and nothing is left behind. Bad input: a taken name, an unknown VM, --detach with a command.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { kvmSkip } from '../helpers/kvm.js';
import { tempDir } from '../helpers/native.js';
import { runCli, TYPEVISOR_BIN } from '../helpers/cli.js';

const runtime = tempDir('typevisor-runtime-');
const env = { ...process.env, TYPEVISOR_RUNTIME_DIR: runtime };
const cli = (args: string[], timeoutMs = 60_000): ReturnType<typeof runCli> => runCli(args, { env, timeoutMs });
const NAME = 'e2e-detached';
const rssMib = (pid: number): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

test('detached VMs: run --detach, exec, ps, logs, page reporting, reboot, stop', { skip: kvmSkip, timeout: 900_000 }, async (t) => {
  const started = await cli(['run', '--detach', '--name', NAME, '--quiet', '--memory', '384M', '--balloon'], 600_000);
  assert.equal(started.status, 0, started.stderr);
  assert.equal(started.stdout, `${NAME}\n`);
  try {
    const ps = JSON.parse((await cli(['ps', '--json'])).stdout) as { name: string; pid: number; state: string; boots: number }[];
    assert.equal(ps.length, 1);
    assert.equal(ps[0]!.name, NAME);
    const pid = ps[0]!.pid;

    await t.test('exec waits for the agent, then runs commands with their status and output', async () => {
      const r = await cli(['exec', NAME, '--', 'sh', '-c', 'echo out; echo err >&2; exit 5'], 400_000);
      assert.deepEqual([r.status, r.stdout, r.stderr], [5, 'out\n', 'err\n']);
      const e = await cli(['exec', '-e', 'X=1 2', '-w', '/proc', NAME, 'sh', '-c', 'echo "$X $(pwd)"']);
      assert.equal(e.stdout, '1 2 /proc\n');
      // The VM's process marks it running once its own ping of the agent succeeds (a moment after ours).
      let table = '';
      for (let i = 0; i < 50 && !/running/.test(table); i++) {
        table = (await cli(['ps'])).stdout;
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.match(table, new RegExp(`^${NAME}\\s+running\\s+${pid}\\s+1\\s+384M\\s+default\\s+1\\s`, 'm'), table);
      assert.equal((await cli(['exec', NAME, '--', 'no-such-command'])).status, 127);
      const timed = await cli(['exec', '--timeout', '1', NAME, '--', 'sleep', '30']);
      assert.equal(timed.status, 124, timed.stderr);
    });

    await t.test('exec -i passes stdin', async () => {
      const child = spawn(process.execPath, [TYPEVISOR_BIN, 'exec', '-i', NAME, '--', 'wc', '-l'], { env, stdio: ['pipe', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      child.stdin.end('one\ntwo\nthree\n');
      const status = await new Promise<number | null>((r) => child.on('close', r));
      assert.equal(status, 0);
      assert.equal(out.trim(), '3');
    });

    await t.test('free page reporting: memory the guest frees goes back to the host', async () => {
      const base = rssMib(pid);
      await cli(['exec', NAME, '--', 'sh', '-c', 'dd if=/dev/zero of=/tmp/fill bs=1M count=48 2>/dev/null'], 300_000);
      const filled = rssMib(pid);
      await cli(['exec', NAME, '--', 'rm', '/tmp/fill']);
      let now = filled;
      for (let i = 0; i < 120 && now > filled - 32; i++) {
        await new Promise((r) => setTimeout(r, 500));
        now = rssMib(pid);
      }
      console.log(`# VMM RSS: ${base.toFixed(0)} MiB, ${filled.toFixed(0)} MiB with 48 MiB filled in the guest, ${now.toFixed(0)} MiB after it freed them`);
      assert.ok(filled - base > 32, 'the fill was resident on the host');
      assert.ok(filled - now > 32, 'and was given back once freed');
    });

    await t.test('logs shows the console', async () => {
      const logs = await cli(['logs', NAME]);
      assert.match(logs.stdout, /Run \/init as init process/);
      assert.match(logs.stdout, /TYPEVISOR-READY/);
    });

    await t.test('a reboot ends an open exec cleanly; the VM comes back under its name', async () => {
      const long = cli(['exec', NAME, '--', 'sleep', '600'], 120_000);
      await new Promise((r) => setTimeout(r, 2000));
      const reboot = await cli(['exec', NAME, '--', 'reboot']);
      assert.equal(reboot.status, 0);
      const ended = await long;
      assert.equal(ended.status, 1, 'the open exec ends, not hangs');
      assert.match(ended.stderr, /closed the connection before the command ended/);
      const after = await cli(['exec', NAME, '--', 'cat', '/proc/uptime'], 400_000);
      assert.equal(after.status, 0, after.stderr);
      assert.ok(Number(after.stdout.split(' ')[0]) < 120, 'a fresh boot');
      const ps = JSON.parse((await cli(['ps', '--json'])).stdout) as { pid: number; boots: number }[];
      assert.deepEqual([ps[0]!.pid, ps[0]!.boots], [pid, 2], 'same VM process, second boot');
    });

    await t.test('bad input: a taken name, an unknown VM, --detach with a command, --name without --detach', async () => {
      const taken = await cli(['run', '--detach', '--name', NAME]);
      assert.equal(taken.status, 2);
      assert.match(taken.stderr, /a VM called 'e2e-detached' is already running/);
      const unknown = await cli(['exec', 'nope', '--', 'true']);
      assert.equal(unknown.status, 1);
      assert.match(unknown.stderr, /no running VM is called 'nope' — 'typevisor ps' lists them/);
      assert.match((await cli(['run', '--detach', '--', 'true'])).stderr, /--detach runs a VM without a command/);
      assert.match((await cli(['run', '--name', 'x', '--', 'true'])).stderr, /--name names a detached VM: add --detach/);
      assert.match((await cli(['run', '--detach', '--name', 'bad/name'])).stderr, /'bad\/name' is not a usable VM name/);
    });
  } finally {
    const stopped = await cli(['stop', NAME], 120_000);
    assert.equal(stopped.status, 0, stopped.stderr);
  }
  assert.ok(!existsSync(join(runtime, 'vms', NAME)), 'its directory is gone');
  assert.equal((await cli(['ps', '--json'])).stdout, '[]\n');
});
