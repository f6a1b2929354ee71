// Unit tests of initrd placement: highest aligned address, kernel and initrd_addr_max limits, clear errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import { initrdAddress, placeInitrd } from '../../../src/arch/x86_64/initrd.js';
import { TypevisorError } from '../../../src/base/errors.js';

const MiB = 2 ** 20;

test('the initrd goes as high as RAM and initrd_addr_max allow, 4 KiB-aligned', () => {
  assert.equal(initrdAddress(5000, { kernelEnd: 4 * MiB, maxAddr: 0x7fffffff, ramEnd: 32 * MiB }), 32 * MiB - 8192);
  assert.equal(initrdAddress(4096, { kernelEnd: 4 * MiB, maxAddr: 0x37ffffff, ramEnd: 2048 * MiB }), 0x37fff000);
  assert.equal(initrdAddress(MiB, { kernelEnd: 0x100001, maxAddr: 0xffffffff, ramEnd: 0x201000 }), 0x101000);
});

test('placeInitrd copies it below the PCI hole', () => {
  const m = GuestMemory.anonymous(32 * MiB);
  const r = placeInitrd(m, new Uint8Array(5000).fill(7), { kernelEnd: 4 * MiB, maxAddr: 0x7fffffff });
  assert.deepEqual(r, { gpa: 32 * MiB - 8192, size: 5000 });
  assert.equal(m.getU8(r.gpa + 4999), 7);
});

test('an initrd that does not fit names the sizes and the remedy; an empty one is refused', () => {
  const tooBig = (fn: () => unknown, re: RegExp): void =>
    assert.throws(fn, (e) => e instanceof TypevisorError && e.code === 'INITRD_TOO_LARGE' && re.test(e.message));
  tooBig(() => initrdAddress(30 * MiB, { kernelEnd: 4 * MiB, maxAddr: 0x7fffffff, ramEnd: 32 * MiB }),
    /initrd \(30\.0 MiB\).*kernel's end \(4\.0 MiB\).*\(32\.0 MiB\) — give the VM at least 34 MiB/);
  tooBig(() => initrdAddress(30 * MiB, { kernelEnd: 4 * MiB, maxAddr: 32 * MiB - 1, ramEnd: 1024 * MiB }), /initrd_addr_max/);
  assert.throws(() => initrdAddress(0, { kernelEnd: 0, maxAddr: 0xffffffff, ramEnd: 32 * MiB }), /empty/);
});
