// End-to-end: Debian's stock cloud kernel boots through Typevisor past the points where QEMU and
// kvmtool die on PVM hosts, and enumerates our virtio PCI functions through our ACPI tables and ECAM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { kvmSkip } from '../helpers/kvm.js';
import { Vm } from '../../src/vmm/vm.js';
import { readFileSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../helpers/native.js';
import { fetchDebianCloudKernel } from '../../src/guest/debian-cloud-kernel.js';
import { readCpio } from '../../src/guest/cpio.js';
import { isPvmHost } from '../../src/kvm/host-kind.js';

/** Printed after alternative_instructions() ran the int3 self-test. */
const AFTER_INT3_SELFTEST = 'x86/fpu: x87 FPU will use';
/** Where QEMU died on this host, on a text_poke_bp() int3. */
const QEMU_DIED_AFTER = 'cpuidle: using governor menu';
/** The PCI scan's lines for our functions: a virtio-blk drive at slot 1, the entropy device at slot 2. */
const PCI_FUNCTIONS = ['pci 0000:00:01.0: [1af4:1042] type 00 class 0x018000', 'pci 0000:00:02.0: [1af4:1044] type 00 class 0xff0000'];
// QEMU's death point normally comes ~80 s in on an idle PVM host, the PCI scan later; generous because emulated guest time scales with host load.
const BUDGET_MS = 600_000;

test('the Debian cloud kernel finds 2 CPUs through our ACPI tables, gets past the int3 self-test and the point where QEMU dies, and enumerates our virtio PCI functions', { skip: kvmSkip, timeout: BUDGET_MS + 60_000 }, async () => {
  const kernel = fetchDebianCloudKernel((l) => console.log(`fixture: ${l}`));
  // What `run --guest debian-cloud` boots: the kernel and its initramfs with the virtio modules.
  const files = new Map(readCpio(new Uint8Array(readFileSync(kernel.initramfs))).map((e) => [e.path, e]));
  const loadOrder = Buffer.from(files.get('etc/typevisor-modules')!.data).toString().trim().split('\n');
  const position = (name: string): number => loadOrder.findIndex((m) => m.endsWith(`/${name}.ko`));
  for (const m of ['virtio', 'virtio_ring', 'virtio_pci', 'virtio_blk', 'virtio_net', 'virtio-rng', 'vmw_vsock_virtio_transport']) {
    assert.ok(position(m) >= 0, `initramfs loads ${m}`);
    assert.ok(files.has(`lib/modules/${kernel.version}/${loadOrder[position(m)]!}`), `initramfs carries ${m}.ko`);
  }
  assert.ok(position('virtio') < position('virtio_pci') && position('virtio_ring') < position('virtio_blk'), loadOrder.join(' '));
  for (const f of ['init', 'init.typevisor', 'bin/busybox', `lib/modules/${kernel.version}/modules.dep`]) assert.ok(files.has(f), f);
  const disk = join(tempDir('typevisor-debian-kernel-'), 'disk.img');
  writeFileSync(disk, '');
  truncateSync(disk, 16 * 2 ** 20);
  const vm = await Vm.create({ kernel: kernel.vmlinux, initrd: kernel.initramfs, memoryMib: 256, vcpus: 2, disks: [{ path: disk }] });
  let log = '';
  vm.console.on('data', (d: Buffer) => { log += d.toString('latin1'); });
  const t0 = Date.now();
  await vm.start();
  // Past QEMU's death point, with the self-test's int3 assisted on PVM hosts. How many run-time
  // text-patching int3s follow varies from boot to boot (0 to 4 seen), so they are reported, not required.
  const reached = await new Promise<boolean>((resolve) => {
    const timer = setInterval(() => {
      const int3 = vm.metrics().assists['int3'] ?? 0;
      const done = log.includes(QEMU_DIED_AFTER) && (!isPvmHost() || int3 >= 1) && PCI_FUNCTIONS.every((l) => log.includes(l));
      if (done || Date.now() - t0 > BUDGET_MS) {
        clearInterval(timer);
        resolve(done);
      }
    }, 500);
    void vm.waitForExit().then(() => { clearInterval(timer); resolve(false); });
  });
  const seconds = ((Date.now() - t0) / 1000).toFixed(1);
  const exit = await vm.stop();
  const lastLine = log.trimEnd().split('\n').at(-1);
  console.log(`Debian ${kernel.version}: ${reached ? 'got past' : 'did not get past'} QEMU's death point and the PCI scan in ${seconds} s; ` +
    `assists ${JSON.stringify(vm.metrics().assists)}; last line: ${lastLine}`);
  assert.ok(log.includes('Linux version'), 'the kernel printed its banner');
  // Debian's kernel has no MP-table fallback in practice: CPUs come from our MADT.
  assert.match(log, /ACPI: Using ACPI \(MADT\) for SMP configuration information/);
  assert.match(log, /smpboot: Allowing 2 CPUs/);
  assert.ok(log.includes(AFTER_INT3_SELFTEST), 'the kernel got past its int3 self-test');
  assert.ok(log.includes(QEMU_DIED_AFTER), `the kernel did not get past QEMU's death point in ${seconds} s (exit: ${exit.reason} ${exit.detail})`);
  // Through our DSDT's PCI0 (PNP0A08) and MCFG: the host bridge's windows, then our functions.
  assert.match(log, /ACPI: PCI Root Bridge \[PCI0\] \(domain 0000 \[bus 00\]\)/);
  for (const line of PCI_FUNCTIONS) assert.ok(log.includes(line), `the PCI scan lists "${line}"`);
  assert.ok(reached, `not everything above within ${seconds} s (exit: ${exit.reason} ${exit.detail})`);
  assert.notEqual(exit.reason, 'crash', exit.detail);
});
