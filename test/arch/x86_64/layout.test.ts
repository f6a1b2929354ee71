// Unit tests of the guest memory map: RAM regions around the PCI hole, the e820 table, size checks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { e820Map, pciMmio64Window, ramRegions, validateMemorySize, E820, LAYOUT, MAX_MEMORY } from '../../../src/arch/x86_64/layout.js';
import { TypevisorError } from '../../../src/base/errors.js';

const MiB = 2 ** 20;
const GiB = 2 ** 30;

test('small guests have one region; e820: low RAM, the BIOS area, RAM from 1 MiB, the reserved ECAM window', () => {
  assert.deepEqual(ramRegions(256 * MiB), [{ gpa: 0, size: 256 * MiB }]);
  assert.deepEqual(e820Map(256 * MiB), [
    { addr: 0, size: 0x9fc00, type: E820.RAM },
    { addr: 0x9fc00, size: 0x60400, type: E820.RESERVED },
    { addr: 0x100000, size: 255 * MiB, type: E820.RAM },
    { addr: 0xe0000000, size: MiB, type: E820.RESERVED },
  ]);
});

test('PCI windows: 32-bit below the ECAM inside the hole, 64-bit from the first GiB boundary above RAM', () => {
  assert.ok(LAYOUT.PCI_MMIO32 >= LAYOUT.MMIO_HOLE_START && LAYOUT.PCI_ECAM + LAYOUT.PCI_ECAM_SIZE <= LAYOUT.IOAPIC);
  assert.deepEqual(pciMmio64Window(256 * MiB), { base: 4 * GiB, size: 64 * GiB });
  assert.deepEqual(pciMmio64Window(6 * GiB), { base: 7 * GiB, size: 64 * GiB });
  assert.deepEqual(pciMmio64Window(6 * GiB + 1 * MiB), { base: 8 * GiB, size: 64 * GiB });
  const huge = pciMmio64Window(MAX_MEMORY);
  assert.ok(huge.base + huge.size <= 2 ** 46);
});

test('exactly 3 GiB fills low RAM; more continues at 4 GiB, leaving the 32-bit hole', () => {
  assert.deepEqual(ramRegions(3 * GiB), [{ gpa: 0, size: 3 * GiB }]);
  assert.deepEqual(ramRegions(6 * GiB), [{ gpa: 0, size: 3 * GiB }, { gpa: 4 * GiB, size: 3 * GiB }]);
  const map = e820Map(6 * GiB);
  assert.deepEqual(map.at(-3), { addr: 1 * MiB, size: 3 * GiB - MiB, type: E820.RAM });
  assert.deepEqual(map.at(-1), { addr: 4 * GiB, size: 3 * GiB, type: E820.RAM });
  assert.equal(map.filter((e) => e.type === E820.RAM).reduce((n, e) => n + e.size, 0), 6 * GiB - 0x60400);
});

test('the boot structures sit in conventional memory without overlapping', () => {
  const spans: [string, number, number][] = [
    ['gdt', LAYOUT.GDT, LAYOUT.GDT_MAX_ENTRIES * 8], ['idt', LAYOUT.IDT, 8], ['pvh', LAYOUT.PVH_START_INFO, LAYOUT.PVH_MODLIST + 32 - LAYOUT.PVH_START_INFO],
    ['zero page', LAYOUT.ZERO_PAGE, 4096], ['stack', LAYOUT.BOOT_STACK - 0xff0, 0xff0], ['page tables', LAYOUT.PML4, 6 * 4096],
    ['cmdline', LAYOUT.CMDLINE, LAYOUT.CMDLINE_MAX],
  ];
  assert.ok(LAYOUT.ACPI_TABLES >= LAYOUT.EBDA && LAYOUT.ACPI_TABLES_END <= LAYOUT.HIGH_MEMORY, 'ACPI tables in the reserved BIOS area');
  spans.sort((a, b) => a[1] - b[1]);
  for (let i = 1; i < spans.length; i++) assert.ok(spans[i - 1]![1] + spans[i - 1]![2] <= spans[i]![1], `${spans[i - 1]![0]} overlaps ${spans[i]![0]}`);
  assert.ok(spans.at(-1)![1] + spans.at(-1)![2] <= LAYOUT.EBDA);
  assert.ok(LAYOUT.IOAPIC >= LAYOUT.MMIO_HOLE_START && LAYOUT.LAPIC < LAYOUT.MMIO_HOLE_END);
});

test('sizes that are too small, unaligned or huge are refused with a clear error', () => {
  assert.throws(() => ramRegions(8 * MiB), /at least 16 MiB/);
  assert.throws(() => ramRegions(256 * MiB + 1), /4 KiB pages/);
  assert.throws(() => ramRegions(-4096), /4 KiB pages/);
  assert.throws(() => ramRegions(2 ** 50), (e) => e instanceof TypevisorError && e.code === 'MEMORY_TOO_LARGE' && /beyond/.test(e.message));
  validateMemorySize(16 * MiB);
  validateMemorySize(MAX_MEMORY);
  assert.ok(ramRegions(MAX_MEMORY).at(-1)!.gpa + ramRegions(MAX_MEMORY).at(-1)!.size <= 2 ** 46);
});
