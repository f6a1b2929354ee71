// Unit tests of struct boot_params: golden offsets from bootparam.h, the e820 table bytes, the header copy.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import { BOOT_PARAMS, HEAP_END_PTR, buildZeroPage, writeZeroPage } from '../../../src/arch/x86_64/zero-page.js';
import { e820Map, LAYOUT } from '../../../src/arch/x86_64/layout.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

test('bootparam.h offsets', () => {
  assert.deepEqual([BOOT_PARAMS.ACPI_RSDP_ADDR, BOOT_PARAMS.EXT_RAMDISK_IMAGE, BOOT_PARAMS.EXT_RAMDISK_SIZE, BOOT_PARAMS.EXT_CMD_LINE_PTR,
    BOOT_PARAMS.E820_ENTRIES, BOOT_PARAMS.HDR, BOOT_PARAMS.E820_TABLE], [0x70, 0xc0, 0xc4, 0xc8, 0x1e8, 0x1f1, 0x2d0]);
  // The table of 128 20-byte entries ends at 0xcd0, where eddbuf starts.
  assert.equal(BOOT_PARAMS.E820_TABLE + BOOT_PARAMS.E820_MAX * BOOT_PARAMS.E820_ENTRY_SIZE, 0xcd0);
});

test('synthesized header (ELF kernels): magic, version, loader, flags, command line, initrd, e820 bytes', () => {
  const bp = buildZeroPage({ cmdlineGpa: 0x20000, cmdlineSize: 12, e820: e820Map(256 << 20), initrd: { gpa: 0xf000000, size: 0x1234 } });
  const v = new DataView(bp.buffer);
  assert.equal(bp.length, 4096);
  assert.equal(v.getUint16(0x1fe, true), 0xaa55);
  assert.equal(v.getUint32(0x202, true), 0x53726448);
  assert.equal(v.getUint16(0x206, true), 0x020f);
  assert.equal(v.getUint16(0x1fa, true), 0xffff);
  assert.equal(bp[0x210], 0xff);
  assert.equal(bp[0x211], 0x81);
  assert.equal(v.getUint16(0x224, true), HEAP_END_PTR);
  assert.equal(v.getUint32(0x228, true), 0x20000);
  assert.equal(v.getUint32(0x238, true), 12);
  assert.equal(v.getUint32(0x218, true), 0xf000000);
  assert.equal(v.getUint32(0x21c, true), 0x1234);
  assert.equal(v.getUint32(0xc0, true), 0);
  assert.equal(v.getBigUint64(0x70, true), 0n);
  assert.equal(bp[0x1e8], 4);
  assert.equal(hex(bp.subarray(0x2d0, 0x2d0 + 64)),
    '0000000000000000' + '00fc090000000000' + '01000000' +
    '00fc090000000000' + '0004060000000000' + '02000000' +
    '0000100000000000' + '0000f00f00000000' + '01000000' + '000000e0'); // ... then the ECAM entry
});

test('addresses above 4 GiB go to the ext_* high halves; the RSDP address is passed', () => {
  const bp = buildZeroPage({ cmdlineGpa: 0x1_2000_0000, cmdlineSize: 0, e820: [], initrd: { gpa: 0x3_0000_1000, size: 0x1_0000_0002 }, rsdpAddr: 0xe0000 });
  const v = new DataView(bp.buffer);
  assert.deepEqual([v.getUint32(0x228, true), v.getUint32(0xc8, true)], [0x2000_0000, 1]);
  assert.deepEqual([v.getUint32(0x218, true), v.getUint32(0xc0, true)], [0x1000, 3]);
  assert.deepEqual([v.getUint32(0x21c, true), v.getUint32(0xc4, true)], [2, 1]);
  assert.equal(v.getBigUint64(0x70, true), 0xe0000n);
});

test("a bzImage's own header is copied to 0x1f1 and only the loader's fields change", () => {
  const header = new Uint8Array(0x26c - 0x1f1);
  const hv = new DataView(header.buffer);
  header[0] = 0x27; // setup_sects
  hv.setUint32(0x202 - 0x1f1, 0x53726448, true);
  hv.setUint16(0x206 - 0x1f1, 0x020f, true);
  header[0x211 - 0x1f1] = 0x01;
  hv.setUint32(0x22c - 0x1f1, 0x7fffffff, true);
  hv.setUint32(0x238 - 0x1f1, 0x7ff, true); // the kernel's command-line limit
  hv.setUint32(0x260 - 0x1f1, 0x3378000, true);
  const bp = buildZeroPage({ cmdlineGpa: LAYOUT.CMDLINE, cmdlineSize: 100, e820: [], setupHeader: header });
  const v = new DataView(bp.buffer);
  assert.equal(bp[0x1f1], 0x27);
  assert.equal(v.getUint32(0x22c, true), 0x7fffffff);
  assert.equal(v.getUint32(0x260, true), 0x3378000);
  assert.equal(bp[0x211], 0x81);
  assert.equal(bp[0x210], 0xff);
  assert.throws(() => buildZeroPage({ cmdlineGpa: LAYOUT.CMDLINE, cmdlineSize: 0x800, e820: [], setupHeader: header }), /accepts at most 2047/);
});

test('more e820 entries than the zero page holds are refused; writeZeroPage puts it at 0x7000', () => {
  const many = Array.from({ length: 129 }, (_, i) => ({ addr: i * 4096, size: 4096, type: 1 }));
  assert.throws(() => buildZeroPage({ cmdlineGpa: 0, cmdlineSize: 0, e820: many }), /holds 128/);
  const m = GuestMemory.anonymous(1 << 20);
  assert.equal(writeZeroPage(m, { cmdlineGpa: 0x20000, cmdlineSize: 1, e820: many.slice(0, 128) }), 0x7000);
  assert.equal(m.getU8(0x7000 + 0x1e8), 128);
  assert.equal(m.getU64(0x7000 + 0x2d0 + 127 * 20), 127n * 4096n);
});
