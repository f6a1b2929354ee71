// Unit tests of the guest memory map: RAM regions around the PCI hole, the e820 table, size checks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { e820Map, ramRegions, E820 } from '../../../src/arch/x86_64/layout.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

test('small guests have one region and a three-entry e820 map', () => {
  assert.deepEqual(ramRegions(256 * MiB), [{ gpa: 0, size: 256 * MiB }]);
  assert.deepEqual(e820Map(256 * MiB), [
    { addr: 0, size: 0x9fc00, type: E820.RAM },
    { addr: 0x9fc00, size: 0x60400, type: E820.RESERVED },
    { addr: 0x100000, size: 255 * MiB, type: E820.RAM },
  ]);
});

test('guests over 3 GiB continue at 4 GiB, leaving the 32-bit hole', () => {
  assert.deepEqual(ramRegions(6 * GiB), [{ gpa: 0, size: 3 * GiB }, { gpa: 4 * GiB, size: 3 * GiB }]);
  const map = e820Map(6 * GiB);
  assert.deepEqual(map.at(-1), { addr: 4 * GiB, size: 3 * GiB, type: E820.RAM });
  assert.equal(map.filter((e) => e.type === E820.RAM).reduce((n, e) => n + e.size, 0), 6 * GiB - 0x60400);
});

test('sizes that are too small, unaligned or huge are refused with a clear error', () => {
  assert.throws(() => ramRegions(8 * MiB), /at least 16 MiB/);
  assert.throws(() => ramRegions(256 * MiB + 1), /4 KiB pages/);
  assert.throws(() => ramRegions(2 ** 50), /beyond/);
});
