// `typevisor run` with bad input: one clear message, a non-zero exit, and no VM started.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/native.js';

const cases: [string[], number, RegExp][] = [
  [['run', '--memory', '12Q', '--kernel', '/nonexistent'], 2, /--memory '12Q' is not a size/],
  [['run', '--bogus'], 2, /Unknown option '--bogus'.*typevisor run --help/],
  [['run', '--cpus', '0', '--kernel', '/nonexistent'], 2, /--cpus '0' is not a whole number/],
  [['run', '--cpus', 'two', '--kernel', '/nonexistent'], 2, /--cpus 'two'/],
  [['run', '--cpus', '300', '--kernel', '/nonexistent'], 2, /at most 254 vCPUs \(asked for 300\)/],
  [['run', '--memory', '1025K', '--kernel', '/nonexistent'], 2, /--memory 1025K is not a whole number of MiB/],
  [['run', '--memory', '64T', '--kernel', '/nonexistent'], 1, /asks for 67108864 MiB but this host has \d+ MiB.*give it less \(--memory\)/],
  [['run', '--guest', 'windows'], 2, /unknown guest 'windows'/],
  [['run', '--initrd', 'x.cpio'], 2, /--initrd goes with --kernel/],
  [['run', '--kernel', '/nonexistent/vmlinux', '--', 'true'], 1, /cannot read the kernel \/nonexistent\/vmlinux: no such file/],
  [['frobnicate'], 2, /unknown command 'frobnicate'/],
  [['run', '--net', 'bridge0'], 2, /--net 'bridge0': write default, tap=NAME or bridge=NAME/],
  [['run', '--net', 'tap=tv0,dhcp'], 2, /dhcp, nat and host= need a bridge/],
  [['run', '--net', 'bridge=tvb,ip=10.0.0.300/24'], 2, /ip= '10.0.0.300\/24' is not an IPv4 address with a prefix length/],
  [['run', '--net', 'default,frob'], 2, /unknown option 'frob'/],
  [['run', '--net', 'tap=no/slash'], 2, /'no\/slash' is not an interface name/],
  [['run', '--net', 'tap=tv0,mac=01:00:5e:00:00:01'], 2, /MAC address '01:00:5e:00:00:01' is not a unicast/],
];

for (const [args, status, message] of cases) {
  test(`typevisor ${args.join(' ')} → exit ${status}`, async () => {
    const r = await runCli(args);
    assert.equal(r.status, status, r.stderr);
    assert.match(r.stderr, message);
    assert.equal(r.stdout, '');
  });
}

test('--help for every command', async () => {
  for (const args of [['--help'], ['run', '--help'], ['guest', '--help']]) {
    const r = await runCli(args);
    assert.equal(r.status, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stdout, /Usage: typevisor/);
  }
});

test('an unwritable cache directory is named with the fix, before any build starts', async () => {
  // A path below a regular file can never be created, even by root.
  const file = join(tempDir(), 'not-a-directory');
  writeFileSync(file, '');
  const r = await runCli(['run', '--', 'true'], { env: { ...process.env, XDG_CACHE_HOME: file } });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /cannot write the guest cache .*not-a-directory\/typevisor\/guest: ENOTDIR — set XDG_CACHE_HOME/);
});
