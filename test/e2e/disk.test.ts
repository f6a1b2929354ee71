// End-to-end on real KVM: virtio-blk drives on the default guest — an ext4 image mounted, read and
// written, a read-only drive, metrics, and the image checked on the host afterwards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { kvmSkip } from '../helpers/kvm.js';
import { tempDir } from '../helpers/native.js';
import { runCli } from '../helpers/cli.js';
import { ensureDefaultGuest } from '../../src/guest/default-guest.js';
import { encodeCommand } from '../../src/guest/command-protocol.js';
import { FileDisk } from '../../src/devices/virtio/block/file-disk.js';
import { Vm } from '../../src/vmm/vm.js';

const BOOT_MS = 300_000;

/** An ext4 image holding `files`, made with e2fsprogs' mkfs.ext4 -d. */
function ext4Image(dir: string, name: string, files: Record<string, string>, size = '64M'): string {
  const src = join(dir, `${name}-src`);
  mkdirSync(src);
  for (const [f, text] of Object.entries(files)) writeFileSync(join(src, f), text);
  const img = join(dir, `${name}.img`);
  writeFileSync(img, '');
  truncateSync(img, 64 * 2 ** 20);
  execFileSync('mkfs.ext4', ['-q', '-F', '-d', src, img, size]);
  return img;
}

const sha = (path: string): string => createHash('sha256').update(readFileSync(path)).digest('hex');

test('two drives and the entropy device: read and write an ext4 image, a read-only one refuses writes, /dev/hwrng reads; the image is whole afterwards', { skip: kvmSkip, timeout: BOOT_MS }, async () => {
  const dir = tempDir('typevisor-disk-');
  const data = ext4Image(dir, 'data', { hello: 'hello from the host\n' });
  const ro = ext4Image(dir, 'ro', { note: 'read only\n' });
  const roSum = sha(ro);
  const assets = await ensureDefaultGuest();
  const script = [
    'mkdir -p /mnt /ro',
    'mount /dev/vda /mnt', 'cat /mnt/hello', 'echo "written by the guest" > /mnt/out', 'sync', 'umount /mnt',
    'mount -o ro /dev/vdb /ro', 'cat /ro/note', 'umount /ro',
    'cat /sys/block/vda/ro /sys/block/vdb/ro /sys/block/vda/serial; echo',
    'if dd if=/dev/zero of=/dev/vdb bs=512 count=1 2>/dev/null; then echo ro-write-succeeded; else echo ro-write-refused; fi',
    // The entropy device: the kernel's hwrng picks it, and /dev/hwrng reads from it.
    'cat /sys/class/misc/hw_random/rng_current', 'head -c 32 /dev/hwrng | od -An -tx1 | wc -w',
  ].join(' && ');
  const vm = await Vm.create({
    kernel: assets.kernel, initrd: assets.initrd, memoryMib: 256, cmdline: `quiet ${encodeCommand(['sh', '-c', script])}`,
    disks: [{ path: data }, { path: ro, readOnly: true }],
  });
  let log = '';
  vm.console.on('data', (d: Buffer) => { log += d.toString('latin1'); });
  // While the VM runs, its images are locked against a second writer.
  assert.throws(() => FileDisk.open(data, { readOnly: false }), /in use by another VM/);
  await vm.start();
  const metrics = (): ReturnType<Vm['metrics']> => vm.metrics();
  let last = metrics();
  const timer = setInterval(() => { last = metrics(); }, 200);
  const exit = await vm.waitForExit();
  clearInterval(timer);
  const out = log.slice(log.indexOf('TYPEVISOR-BEGIN')).replace(/\r/g, '');
  assert.equal(exit.reason, 'poweroff', `${exit.detail}\n${log.slice(-2000)}`);
  assert.match(out, /TYPEVISOR-EXIT 0/, out);
  assert.match(out, /hello from the host\nread only\n0\n1\ntypevisor-vda\nro-write-refused\nvirtio_rng\.\d+\n\s*32\n/);
  assert.equal(execFileSync('debugfs', ['-R', 'cat /out', data], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }), 'written by the guest\n');
  execFileSync('e2fsck', ['-fn', data], { stdio: 'pipe' });
  assert.equal(sha(ro), roSum, 'the read-only image is byte-for-byte unchanged');
  const [vda, vdb] = last.disks;
  console.log(`disk metrics: ${JSON.stringify(last.disks)}`);
  assert.ok(vda && vda.readBytes > 0 && vda.writeBytes > 0 && vda.flushes > 0 && vda.notifications > 0, JSON.stringify(vda));
  assert.ok(vdb && vdb.readBytes > 0 && vdb.writeBytes === 0, JSON.stringify(vdb));
  assert.ok(last.rng && last.rng.bytes >= 32 && last.rng.errors === 0, JSON.stringify(last.rng));
  // Closed with the VM: the lock is gone.
  FileDisk.open(data, { readOnly: false }).close();
});

test('run --disk with bad images: missing, in use, malformed spec — clear errors, nothing started', { timeout: 60_000 }, async () => {
  const dir = tempDir('typevisor-disk-');
  const img = join(dir, 'x.img');
  writeFileSync(img, Buffer.alloc(1 << 20));
  const held = FileDisk.open(img, { readOnly: false });
  try {
    const busy = await runCli(['run', '--kernel', '/bin/true', '--disk', img, '--', 'true']);
    assert.equal(busy.status, 2);
    assert.match(busy.stderr, /x\.img is in use by another VM/);
  } finally {
    held.close();
  }
  const missing = await runCli(['run', '--kernel', '/bin/true', '--disk', join(dir, 'nope.img'), '--', 'true']);
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /cannot open the disk image .*nope\.img: no such file/);
  const spec = await runCli(['run', '--disk', 'a,b,ro', '--', 'true']);
  assert.equal(spec.status, 2);
  assert.match(spec.stderr, /--disk 'a,b,ro' — write FILE or FILE,ro/);
});

test('kill -9 of the VMM during a write loop: the filesystem recovers cleanly and every synced file is there', { skip: kvmSkip, timeout: BOOT_MS }, async () => {
  const { spawn } = await import('node:child_process');
  const { TYPEVISOR_BIN } = await import('../helpers/cli.js');
  const dir = tempDir('typevisor-disk-');
  const data = ext4Image(dir, 'data', {});
  const script = 'mkdir -p /mnt && mount /dev/vda /mnt && i=0; while :; do echo "file $i" > /mnt/f$i; sync; echo "synced $i"; i=$((i+1)); done';
  const child = spawn(process.execPath, [TYPEVISOR_BIN, 'run', '--quiet', '--disk', data, '--', 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  const exited = new Promise((r) => child.on('close', r));
  const t0 = Date.now();
  while (!/synced 4\n/.test(out)) {
    if (Date.now() - t0 > BOOT_MS - 60_000) { child.kill('SIGKILL'); throw new Error(`no progress: ${out.slice(-500)}`); }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill('SIGKILL');
  await exited;
  const synced = Math.max(...Array.from(out.matchAll(/synced (\d+)/g), (m) => Number(m[1])));
  // Recover a copy as the next boot would (journal replay), then it must check clean.
  const copy = join(dir, 'after-crash.img');
  execFileSync('cp', ['--sparse=always', data, copy]);
  try {
    execFileSync('e2fsck', ['-fy', copy], { stdio: 'pipe' });
  } catch (e) {
    // 1 = "errors corrected" (the journal replayed); anything above is a damaged filesystem.
    const status = (e as { status?: number }).status ?? -1;
    assert.ok(status === 1, `e2fsck -fy exited ${status}: ${String((e as { stdout?: Buffer }).stdout)}`);
  }
  execFileSync('e2fsck', ['-fn', copy], { stdio: 'pipe' });
  for (let i = 0; i <= synced; i++) {
    assert.equal(execFileSync('debugfs', ['-R', `cat /f${i}`, copy], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }), `file ${i}\n`, `f${i} was synced`);
  }
  console.log(`killed after ${synced + 1} synced writes; all present after recovery`);
});
