// End-to-end on real KVM: `image create --from debian` builds a Debian 12 root image (debootstrap
// + mkfs.ext4 -d), and `run --root` boots it with systemd as PID 1 to multi-user.target, runs a
// command through the image's command unit (the guest agent's unit is active too), and powers off
// leaving a clean file system. On PVM
// hosts every guest page fault and exec runs in KVM's emulator: this boot takes minutes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { kvmSkip } from '../helpers/kvm.js';
import { tempDir } from '../helpers/native.js';
import { runCli } from '../helpers/cli.js';

const BUILD_MS = 15 * 60_000;
const BOOT_MS = 25 * 60_000;

const debugfsCat = (img: string, path: string): string =>
  execFileSync('debugfs', ['-R', `cat ${path}`, img], { stdio: ['ignore', 'pipe', 'ignore'] }).toString();

test('a Debian image boots to multi-user.target under systemd, runs a command, powers off clean', { skip: kvmSkip, timeout: BUILD_MS + BOOT_MS }, async () => {
  const dir = tempDir('typevisor-debian-');
  const img = join(dir, 'debian.img');
  const made = await runCli(['image', 'create', img, '--size', '2G', '--from', 'debian'], { timeoutMs: BUILD_MS });
  assert.equal(made.status, 0, made.stderr);
  assert.equal(made.stdout.trim(), img);
  execFileSync('e2fsck', ['-fn', img], { stdio: 'pipe' });
  const machineId = debugfsCat(img, '/etc/machine-id').trim();
  assert.match(machineId, /^[0-9a-f]{32}$/, 'each image gets its own machine-id');
  assert.match(debugfsCat(img, '/etc/systemd/system/typevisor-agent.service'), /ExecStart=\/usr\/local\/sbin\/typevisor-agent/);

  const script = [
    'systemctl is-active multi-user.target',
    'echo "pid1=$(cat /proc/1/comm)"',
    'echo "root=$(findmnt -no SOURCE,FSTYPE /)"',
    'grep PRETTY_NAME /etc/os-release',
    'echo "machine-id=$(cat /etc/machine-id)"',
    'echo "failed=$(systemctl --failed --no-legend --plain | wc -l)"',
    'echo "agent=$(systemctl is-active typevisor-agent)"',
    'systemctl --failed --no-legend --plain',
    'echo "written in the guest" > /root/from-guest',
    'exit 7',
  ].join('; ');
  const t0 = Date.now();
  const r = await runCli(['run', '--cpus', '2', '--memory', '512M', '--root', img, '--', 'sh', '-c', script], { timeoutMs: BOOT_MS });
  const bootSeconds = (Date.now() - t0) / 1000;
  console.log(`# Debian (systemd) boot to multi-user.target + command + power-off: ${bootSeconds.toFixed(0)} s\n# guest output:\n${r.stdout.replace(/^/gm, '#   ')}`);
  assert.equal(r.status, 7, `the command's exit status comes back\n${r.stderr.slice(-3000)}`);
  const out = r.stdout.split('\n');
  assert.equal(out[0], 'active', 'multi-user.target is active when the command runs');
  assert.ok(out.includes('pid1=systemd'), r.stdout);
  assert.ok(out.includes('root=/dev/vda ext4'), r.stdout);
  assert.ok(out.includes('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"'), r.stdout);
  assert.ok(out.includes(`machine-id=${machineId}`), r.stdout);
  assert.ok(out.includes('failed=0'), `no failed units:\n${r.stdout}`);
  assert.ok(out.includes('agent=active'), `the guest agent runs in the Debian image too:\n${r.stdout}`);
  assert.match(r.stderr, /systemd\[1\]|Reached target.*Multi-User System/, 'the boot log shows systemd');

  // The forced power-off remounted / read-only first: the image checks clean and holds the write.
  execFileSync('e2fsck', ['-fn', img], { stdio: 'pipe' });
  assert.equal(debugfsCat(img, '/root/from-guest'), 'written in the guest\n');
});
