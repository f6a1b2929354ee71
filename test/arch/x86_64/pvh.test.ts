// Unit tests of the PVH start_info writer and the 32-bit PVH entry state.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import { buildPvhStartInfo, pvhBootState, writePvhStartInfo, HVM_START_MAGIC, PVH_MEMMAP_MAX } from '../../../src/arch/x86_64/pvh.js';
import { GDT_ENTRY } from '../../../src/arch/x86_64/gdt.js';
import { e820Map, LAYOUT } from '../../../src/arch/x86_64/layout.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

test('start_info golden bytes: magic, version 1, module list, command line, RSDP, memory map', () => {
  const blob = buildPvhStartInfo({ cmdlineGpa: 0x20000, e820: e820Map(64 << 20), initrd: { gpa: 0x3000000, size: 99 }, rsdpAddr: 0xe0000 });
  assert.equal(HVM_START_MAGIC, 0x336ec578);
  assert.equal(hex(blob.subarray(0, 56)),
    '78c56e33' + '01000000' + '00000000' + '01000000' + // magic, version, flags, nr_modules
    '006f000000000000' + '0000020000000000' + '00000e0000000000' + '4060000000000000' + // modlist, cmdline, rsdp, memmap
    '04000000' + '00000000'); // memmap_entries (RAM, EBDA..1 MiB, RAM, ECAM), reserved
  const mm = LAYOUT.PVH_MEMMAP - LAYOUT.PVH_START_INFO;
  assert.equal(hex(blob.subarray(mm + 24, mm + 48)), '00fc090000000000' + '0004060000000000' + '02000000' + '00000000');
  const mod = LAYOUT.PVH_MODLIST - LAYOUT.PVH_START_INFO;
  assert.equal(hex(blob.subarray(mod, mod + 32)), '0000000300000000' + '6300000000000000' + '00'.repeat(16));
});

test('without an initrd there are no modules; oversized memory maps are refused', () => {
  const v = new DataView(buildPvhStartInfo({ cmdlineGpa: 0x20000, e820: [] }).buffer);
  assert.equal(v.getUint32(12, true), 0);
  assert.equal(v.getBigUint64(16, true), 0n);
  const many = Array.from({ length: PVH_MEMMAP_MAX + 1 }, () => ({ addr: 0, size: 4096, type: 1 }));
  assert.throws(() => buildPvhStartInfo({ cmdlineGpa: 0, e820: many }), /holds 157/);
});

test('PVH entry: 32-bit flat protected mode, paging off, EBX = start_info, its GDT written', () => {
  const m = GuestMemory.anonymous(1 << 20);
  const si = writePvhStartInfo(m, { cmdlineGpa: 0x20000, e820: e820Map(64 << 20) });
  assert.equal(m.getU32(si), HVM_START_MAGIC);
  const st = pvhBootState(m, 0x1000850, si);
  assert.deepEqual(st.regs, { rip: 0x1000850n, rbx: 0x6000n, rflags: 2n });
  assert.deepEqual(st.sregs.cs, { base: 0n, limit: 0xffffffff, selector: 8, type: 0xb, s: 1, dpl: 0, present: 1, avl: 0, l: 0, db: 1, g: 1, unusable: 0 });
  for (const s of [st.sregs.ds, st.sregs.es, st.sregs.ss]) assert.deepEqual([s.selector, s.type, s.db, s.limit], [0x10, 3, 1, 0xffffffff]);
  assert.deepEqual([st.sregs.tr.selector, st.sregs.tr.type, st.sregs.tr.limit], [0x18, 0xb, 0x67]);
  assert.deepEqual([st.sregs.cr0, st.sregs.cr3, st.sregs.cr4, st.sregs.efer], [0x11n, 0n, 0n, 0n]);
  assert.deepEqual([0, 1, 2, 3].map((i) => m.getU64(LAYOUT.GDT + i * 8)), [0n, GDT_ENTRY.CODE32, GDT_ENTRY.DATA, GDT_ENTRY.TSS]);
});
