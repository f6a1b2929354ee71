// End-to-end on real KVM, one boot of the default guest through the library: the guest agent over
// virtio-vsock (exec with exit status, environment, stdin, a long output streamed in order, a
// 10 MiB file up and back byte-exact), raw vsock echo in both directions, the guest's wall clock
// put right after a pause, the memory balloon (guest free memory and host memory both drop, then
// come back; free page reporting is off here so that only the inflation gives memory back — the
// detached-VM test sees reporting), and a vsock device reset by the guest closing open connections cleanly.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { connect, createServer } from 'node:net';
import { readFileSync } from 'node:fs';
import { Vm } from '../../src/vmm/vm.js';
import { ensureDefaultGuest } from '../../src/guest/default-guest.js';
import { TypevisorError } from '../../src/base/errors.js';
import { kvmSkip } from '../helpers/kvm.js';
import { runCli } from '../helpers/cli.js';

const BOOT_MS = 300_000;
const md5 = (b: Uint8Array): string => createHash('md5').update(b).digest('hex');
const rssBytes = (): number => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'))![1]) * 1024;
const meminfo = async (vm: Vm, key: string): Promise<number> => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec((await vm.exec(['cat', '/proc/meminfo'])).stdout)![1]) * 1024;

test('the guest agent, vsock, clock and balloon on one boot', { skip: kvmSkip, timeout: BOOT_MS + 600_000 }, async (t) => {
  const guest = await ensureDefaultGuest((l) => console.log(`# ${l}`));
  const vm = await Vm.create({ kernel: guest.kernel, initrd: guest.initrd, memoryMib: 512, cmdline: 'quiet', balloon: { freePageReporting: false } });
  let log = '';
  vm.console.on('data', (d: Buffer) => { log += d.toString('latin1'); });
  await vm.start();
  try {
    const t0 = Date.now();
    const health = await vm.waitForAgent(BOOT_MS);
    console.log(`# agent answered ${((Date.now() - t0) / 1000).toFixed(1)} s after start: ${JSON.stringify(health)}`);
    assert.equal(health.version, 1);

    await t.test('exec: output, exit status, environment, working directory, stdin, missing commands', async () => {
      const r = await vm.exec(['sh', '-c', 'echo "$GREETING from $(pwd)"; echo oops >&2; exit 42'], { env: { GREETING: 'hi' }, cwd: '/tmp' });
      assert.deepEqual(r, { exitCode: 42, signal: 0, stdout: 'hi from /tmp\n', stderr: 'oops\n' });
      assert.match((await vm.exec('uname -r')).stdout, /^6\.1\.\d+\n$/, 'a string is run by sh -c');
      assert.equal((await vm.exec(['tr', 'a-z', 'A-Z'], { stdin: 'shout\n' })).stdout, 'SHOUT\n');
      assert.equal((await vm.exec(['no-such-command'])).exitCode, 127);
      // The CLI reaches a library VM through its socket.
      const cli = await runCli(['exec', '--socket', vm.vsockSocketPath!, 'sh', '-c', 'echo from the cli; exit 9']);
      assert.deepEqual([cli.status, cli.stdout], [9, 'from the cli\n'], cli.stderr);
    });

    await t.test('a long output streams in order without loss', async () => {
      const proc = await vm.spawn(['seq', '1', '200000']);
      let text = '';
      let chunks = 0;
      proc.stdout.on('data', (c: Buffer) => { text += c.toString(); chunks++; });
      const status = await proc.wait();
      assert.equal(status.exitCode, 0);
      const lines = text.split('\n');
      assert.equal(lines.length, 200001);
      for (let i = 0; i < 200000; i++) if (lines[i] !== String(i + 1)) assert.fail(`line ${i + 1} is '${lines[i]}'`);
      console.log(`# ${text.length} bytes in ${chunks} chunks`);
    });

    await t.test('a 10 MiB file uploaded and read back byte-exact', async () => {
      const data = new Uint8Array(10 * 2 ** 20);
      for (let i = 0; i < data.length; i++) data[i] = (i * 131 + (i >> 13)) & 0xff;
      const t1 = Date.now();
      await vm.files.write('/tmp/upload.bin', data, { mode: 0o640 });
      const up = Date.now() - t1;
      assert.equal((await vm.exec(['md5sum', '/tmp/upload.bin'])).stdout.split(' ')[0], md5(data), 'the guest has the same bytes');
      assert.equal((await vm.exec(['stat', '-c', '%a %s', '/tmp/upload.bin'])).stdout.trim(), `640 ${data.length}`);
      const t2 = Date.now();
      const back = await vm.files.read('/tmp/upload.bin');
      console.log(`# 10 MiB up in ${up} ms, down in ${Date.now() - t2} ms`);
      assert.equal(md5(back), md5(data));
      await assert.rejects(vm.files.read('/no/such/file'), (e: TypevisorError) => e.code === 'NOT_FOUND');
    });

    await t.test('raw vsock echo: host → guest listener, guest → host listener', async () => {
      const socketPath = vm.vsockSocketPath!;
      // Guest side: an echo server on vsock port 5000 (the agent's relay, looped through a FIFO).
      const server = await vm.spawn(['sh', '-c', 'rm -f /tmp/f; mkfifo /tmp/f; typevisor-agent listen 5000 < /tmp/f | cat > /tmp/f']);
      const echoed = await (async () => {
        for (let attempt = 0; ; attempt++) {
          try {
            return await new Promise<string>((resolve, reject) => {
              const s = connect(socketPath, () => s.write('CONNECT 5000\n'));
              let got = '';
              s.on('data', (d: Buffer) => {
                got += d.toString();
                if (/^OK \d+\n$/.test(got)) s.write('echo through vsock\n');
                if (got.endsWith('echo through vsock\n')) { s.end(); resolve(got); }
              });
              s.on('close', () => reject(new Error(`closed after '${got}'`)));
              s.on('error', reject);
            });
          } catch (e) {
            if (attempt > 40) throw e;
            await new Promise((r) => setTimeout(r, 250));
          }
        }
      })();
      assert.match(echoed, /^OK \d+\necho through vsock\n$/);
      await server.wait();
      // Host side: whoever listens on PATH_6000 is host port 6000 for the guest.
      const host = createServer((s) => s.on('data', (d: Buffer) => s.write(d.toString().toUpperCase())).on('end', () => s.end()));
      await new Promise<void>((r) => host.listen(`${socketPath}_6000`, r));
      try {
        const r = await vm.exec(['sh', '-c', 'echo ping from the guest | typevisor-agent connect 2 6000']);
        assert.equal(r.stdout, 'PING FROM THE GUEST\n', r.stderr);
        assert.notEqual((await vm.exec(['typevisor-agent', 'connect', '2', '6001'])).exitCode, 0, 'nobody listens on host port 6001');
      } finally {
        host.close();
      }
    });

    await t.test('after a pause the guest wall clock is set to the host\'s again', async () => {
      const skew = async (): Promise<number> => Number((await vm.exec(['date', '+%s'])).stdout) - Date.now() / 1000;
      await vm.syncClock();
      const before = await skew();
      await vm.pause();
      await new Promise((r) => setTimeout(r, 5000));
      vm.resume();
      await new Promise((r) => setTimeout(r, 1000));
      const after = await skew();
      console.log(`# guest − host clock: ${before.toFixed(2)} s before the pause, ${after.toFixed(2)} s after a 5 s pause`);
      assert.ok(Math.abs(after) < 2, `the guest clock is off by ${after.toFixed(2)} s after resume`);
    });

    await t.test('the balloon takes memory from the guest and gives it to the host, and back', async () => {
      // Touch 48 MiB in the guest and free it, so that the host has pages to get back.
      await vm.exec(['sh', '-c', 'dd if=/dev/zero of=/tmp/fill bs=1M count=48 2>/dev/null; rm /tmp/fill']);
      const freeBefore = await meminfo(vm, 'MemFree');
      const hostBefore = vm.metrics().guestMemoryInUseBytes;
      const rssBefore = rssBytes();
      vm.setBalloon(128);
      const deadline = Date.now() + 240_000;
      while (vm.metrics().balloon!.actualMib < 128 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 500));
      const b = vm.metrics().balloon!;
      const freeAfter = await meminfo(vm, 'MemFree');
      const hostAfter = vm.metrics().guestMemoryInUseBytes;
      const rssAfter = rssBytes();
      console.log(`# balloon ${JSON.stringify(b)}; guest MemFree ${(freeBefore / 2 ** 20).toFixed(0)} → ${(freeAfter / 2 ** 20).toFixed(0)} MiB; host guest-RAM ${(hostBefore / 2 ** 20).toFixed(0)} → ${(hostAfter / 2 ** 20).toFixed(0)} MiB; RSS ${(rssBefore / 2 ** 20).toFixed(0)} → ${(rssAfter / 2 ** 20).toFixed(0)} MiB`);
      assert.equal(b.actualMib, 128, 'the driver reached the target');
      assert.ok(freeBefore - freeAfter > 100 * 2 ** 20, 'the guest lost the balloon\'s memory');
      assert.ok(b.discardedBytes >= 128 * 2 ** 20, 'every inflated page was given back');
      assert.ok(hostBefore - hostAfter > 24 * 2 ** 20, 'host memory behind guest RAM dropped');
      assert.ok(rssBefore - rssAfter > 24 * 2 ** 20, 'the VMM\'s resident memory dropped');
      const stats = await vm.balloonStats();
      assert.ok((stats.stats['totalMemory'] ?? 0) > 400 * 2 ** 20, `statistics: ${JSON.stringify(stats.stats)}`);
      vm.setBalloon(0);
      while (vm.metrics().balloon!.actualMib > 0 && Date.now() < deadline + 120_000) await new Promise((r) => setTimeout(r, 500));
      assert.equal(vm.metrics().balloon!.actualMib, 0);
      assert.ok(await meminfo(vm, 'MemFree') > freeAfter + 100 * 2 ** 20, 'the guest has its memory back');
    });

    await t.test('a vsock device reset by the guest ends open connections cleanly; new ones work after', async () => {
      const pci = (await vm.exec(['sh', '-c', 'for d in /sys/bus/pci/devices/*; do [ "$(cat $d/device)" = 0x1053 ] && basename $d; done'])).stdout.trim();
      assert.match(pci, /^0000:00:\w\w\.\d$/, 'the vsock function (1af4:1053)');
      const long = await vm.spawn(['sleep', '600']);
      // Unbind and bind the driver a moment after this exec has returned (its own connection goes too).
      await vm.exec(['sh', '-c', `setsid sh -c 'sleep 1; echo ${pci} > /sys/bus/pci/drivers/virtio-pci/unbind; sleep 1; echo ${pci} > /sys/bus/pci/drivers/virtio-pci/bind' </dev/null >/dev/null 2>&1 &`]);
      await assert.rejects(long.wait(), (e: TypevisorError) => e.code === 'AGENT_FAILED' && /closed the connection/.test(e.message));
      const resetsBefore = vm.metrics().vsock!.hostConnections;
      const again = await vm.waitForAgent(60_000);
      assert.equal(again.version, 1);
      assert.equal((await vm.exec(['echo', 'after the reset'])).stdout, 'after the reset\n');
      assert.ok(vm.metrics().vsock!.hostConnections > resetsBefore);
      assert.equal(vm.metrics().vsock!.errors, 0);
    });

    // An idle guest leaves the I/O thread asleep (a readable fd nobody reads would wake it without end).
    const idle0 = vm.metrics();
    await new Promise((r) => setTimeout(r, 3000));
    const idle1 = vm.metrics();
    const idleWakeups = idle1.ioThreadWakeups - idle0.ioThreadWakeups;
    console.log(`# I/O thread: ${idle1.ioThreadWakeups} wake-ups in all, ${(idle1.ioThreadCpuNs / 1e6).toFixed(0)} ms CPU; ${idleWakeups} in 3 s idle`);
    assert.ok(idle0.ioThreadWakeups > 100, 'the transfers above woke it (the counter counts)');
    assert.ok(idleWakeups < 50, `${idleWakeups} wake-ups in 3 idle seconds`);
    const m = vm.metrics();
    console.log(`# vsock metrics ${JSON.stringify(m.vsock)}`);
    assert.equal(m.vsock!.creditViolations, 0);
    assert.equal(m.vsock!.dropped, 0, 'the Linux driver sends nothing we drop');
  } finally {
    await vm.stop();
  }
  assert.ok(!log.includes('typevisor: the I/O thread failed'), log.slice(-2000));
});
