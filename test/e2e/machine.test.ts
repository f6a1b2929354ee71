// End-to-end on real KVM with the default guest: many vCPUs through our ACPI tables, memory above
// 4 GiB, ACPI power-off, the ACPI power button, and pause/resume of a running guest.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { kvmSkip } from '../helpers/kvm.js';
import { runCli } from '../helpers/cli.js';
import { ensureDefaultGuest } from '../../src/guest/default-guest.js';
import { encodeCommand } from '../../src/guest/command-protocol.js';
import { Vm } from '../../src/vmm/vm.js';

const BOOT_MS = 300_000;

test('run --cpus 4 --memory 4G: 4 CPUs on a 2-core host, all the memory above the PCI hole, ACPI power-off', { skip: kvmSkip, timeout: BOOT_MS }, async () => {
  const r = await runCli(['run', '--cpus', '4', '--memory', '4G', '--', 'sh', '-c',
    'nproc; grep MemTotal /proc/meminfo; grep -c "^processor" /proc/cpuinfo; ls /sys/firmware/acpi/tables | sort | tr "\\n" " "; echo; ' +
    'for d in /sys/bus/pci/devices/*; do echo "${d##*/} $(cat $d/vendor) $(cat $d/device) $(cat $d/class)"; done'],
  { timeoutMs: BOOT_MS });
  console.log(`run --cpus 4 --memory 4G: ${r.seconds.toFixed(1)} s`);
  assert.equal(r.status, 0, r.stderr.slice(-3000));
  const [nproc, meminfo, processors, tables, pci] = r.stdout.split('\n');
  assert.equal(nproc, '4');
  assert.equal(processors, '4');
  const kib = Number(/MemTotal:\s+(\d+) kB/.exec(meminfo ?? '')?.[1]);
  assert.ok(kib >= 3.8 * 2 ** 20, `MemTotal ${kib} kB for --memory 4G`);
  for (const t of ['APIC', 'DSDT', 'FACP', 'MCFG']) assert.ok(tables?.includes(t), `guest sees ACPI table ${t}: ${tables}`);
  // The PCI host bridge, found through the DSDT's PNP0A08 and read through the MCFG's ECAM window.
  assert.equal(pci, '0000:00:00.0 0x1b36 0x0008 0x060000');
  assert.match(r.stderr, /PCI: MMCONFIG for domain 0000 \[bus 00-00\] at \[mem 0xe0000000-0xe00fffff\]/);
  assert.match(r.stderr, /smpboot: Allowing 4 CPUs/);
  assert.match(r.stderr, /ACPI: PM: \(supports S0 S5\)/);
  assert.match(r.stderr, /BIOS-e820: \[mem 0x0000000100000000-0x000000013fffffff\] usable/);
});

test('library: 2 vCPUs; pause for 2 s and resume a counting guest without losing output; the power button stops it', { skip: kvmSkip, timeout: BOOT_MS }, async () => {
  const assets = await ensureDefaultGuest();
  const script = 'nproc; i=0; while :; do echo "tick $i"; i=$((i+1)); sleep 0.2; done';
  const vm = await Vm.create({ kernel: assets.kernel, initrd: assets.initrd, vcpus: 2, memoryMib: 256, cmdline: encodeCommand(['sh', '-c', script]) });
  let log = '';
  vm.console.on('data', (d: Buffer) => { log += d.toString('latin1'); });
  const ticks = (): number[] => Array.from(log.matchAll(/^tick (\d+)\r?$/gm), (m) => Number(m[1]));
  const until = async (what: string, cond: () => boolean, ms = BOOT_MS - 60_000): Promise<void> => {
    const end = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}; console tail: ${JSON.stringify(log.slice(-800))}`);
      await sleep(100);
    }
  };
  assert.throws(() => vm.resume(), /cannot resume a VM that is created/);
  await vm.start();
  try {
    await until('tick 3', () => ticks().length >= 4);
    assert.match(log, /TYPEVISOR-BEGIN\r?\n2\r?\n/, 'nproc in the guest says 2');
    await vm.pause();
    assert.equal(vm.status, 'paused');
    await assert.rejects(vm.pause(), /cannot pause a VM that is paused/);
    const atPause = ticks().length;
    await sleep(2000);
    const whilePaused = ticks().length;
    assert.ok(whilePaused <= atPause + 1, `the guest kept running while paused (${atPause} → ${whilePaused} ticks)`);
    vm.resume();
    assert.throws(() => vm.resume(), /cannot resume a VM that is running/);
    await until('5 more ticks', () => ticks().length >= whilePaused + 5, 120_000);
    const seen = ticks();
    assert.deepEqual(seen, seen.map((_, i) => i), 'every tick printed once, in order, across the pause');

    vm.powerButton();
    const exit = await Promise.race([vm.waitForExit(), sleep(120_000).then(() => undefined)]);
    assert.ok(exit, `the guest did not act on the power button; console tail: ${JSON.stringify(log.slice(-800))}`);
    assert.equal(exit.reason, 'poweroff', exit.detail);
    assert.match(exit.detail, /ACPI S5/, 'through the ACPI sleep register, not the console-line fallback');
    assert.match(log, /TYPEVISOR-EXIT 143/, 'the command was stopped with SIGTERM');
    assert.throws(() => vm.powerButton(), /exited/);
    await assert.rejects(vm.pause(), /cannot pause a VM that is exited/);
  } finally {
    await vm.stop();
  }
});
