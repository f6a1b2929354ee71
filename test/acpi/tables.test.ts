// The ACPI table builders: headers, checksums and the fields Linux reads, at their spec offsets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checksum, fadt, madt, mcfg, rsdp, sdt, xsdt, FADT_FLAGS } from '../../src/acpi/tables.js';

const sum = (b: Uint8Array): number => b.reduce((s, x) => (s + x) & 0xff, 0);
const view = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);
const text = (b: Uint8Array, at: number, n: number): string => Buffer.from(b.subarray(at, at + n)).toString('latin1');

test('sdt: header fields and a checksum that makes the table sum to zero', () => {
  const t = sdt('TEST', 3, Uint8Array.of(1, 2, 3, 250));
  assert.equal(text(t, 0, 4), 'TEST');
  assert.equal(view(t).getUint32(4, true), 40);
  assert.equal(t[8], 3);
  assert.equal(text(t, 10, 6), 'TYPVSR');
  assert.equal(text(t, 16, 8), 'TYPEVSOR');
  assert.equal(text(t, 28, 4), 'TYPV');
  assert.equal(sum(t), 0);
  assert.throws(() => sdt('bad!', 1, new Uint8Array()));
  assert.equal(checksum(Uint8Array.of(0xff, 0x01)), 0);
  assert.equal(checksum(Uint8Array.of(0x10)), 0xf0);
});

test('rsdp: revision 2, XSDT address, 20-byte and full checksums', () => {
  const r = rsdp(0xe0030);
  assert.equal(r.length, 36);
  assert.equal(text(r, 0, 8), 'RSD PTR ');
  assert.equal(r[15], 2);
  assert.equal(view(r).getUint32(16, true), 0, 'no RSDT');
  assert.equal(view(r).getUint32(20, true), 36);
  assert.equal(view(r).getBigUint64(24, true), 0xe0030n);
  assert.equal(sum(r.subarray(0, 20)), 0);
  assert.equal(sum(r), 0);
});

test('xsdt: one 64-bit address per table', () => {
  const x = xsdt([0x1000, 0x1_0000_0000]);
  assert.equal(x.length, 36 + 16);
  assert.equal(view(x).getBigUint64(36, true), 0x1000n);
  assert.equal(view(x).getBigUint64(44, true), 0x1_0000_0000n);
  assert.equal(sum(x), 0);
});

test('fadt: hardware-reduced, 276 bytes, DSDT, reset and sleep registers where ACPI 6.5 puts them', () => {
  const f = fadt({
    dsdtAddress: 0xe0100,
    sleepControl: { space: 'io', bitWidth: 8, address: 0x600 },
    sleepStatus: { space: 'io', bitWidth: 8, address: 0x601 },
    reset: { space: 'io', bitWidth: 8, address: 0x602 },
    resetValue: 0x42,
    iapcBootArch: 0x6,
  });
  const v = view(f);
  assert.equal(f.length, 276);
  assert.equal(text(f, 0, 4), 'FACP');
  assert.equal(f[8], 6);
  assert.equal(f[131], 5, 'minor version');
  assert.equal(sum(f), 0);
  assert.equal(v.getUint32(40, true), 0xe0100);
  assert.equal(v.getBigUint64(140, true), 0xe0100n);
  assert.equal(v.getUint16(109, true), 0x6);
  const flags = v.getUint32(112, true);
  assert.ok(flags & FADT_FLAGS.HW_REDUCED_ACPI);
  assert.ok(flags & FADT_FLAGS.RESET_REG_SUP);
  // GAS: space 1 (I/O), 8 bits, offset 0, byte access, address.
  const gas = (at: number): number[] => [f[at]!, f[at + 1]!, f[at + 2]!, f[at + 3]!, Number(v.getBigUint64(at + 4, true))];
  assert.deepEqual(gas(116), [1, 8, 0, 1, 0x602]);
  assert.equal(f[128], 0x42);
  assert.deepEqual(gas(244), [1, 8, 0, 1, 0x600]);
  assert.deepEqual(gas(256), [1, 8, 0, 1, 0x601]);
  // Hardware-reduced: no SCI, no PM1 blocks, no FACS.
  assert.equal(v.getUint16(46, true), 0);
  assert.equal(v.getUint32(64, true), 0);
  assert.equal(v.getBigUint64(132, true), 0n);
});

test('fadt: a DSDT above 4 GiB is only in X_DSDT', () => {
  const f = fadt({ dsdtAddress: 2 ** 33, sleepControl: { space: 'io', bitWidth: 8, address: 1 }, sleepStatus: { space: 'io', bitWidth: 8, address: 2 }, reset: { space: 'io', bitWidth: 8, address: 3 }, resetValue: 1, iapcBootArch: 0 });
  assert.equal(view(f).getUint32(40, true), 0);
  assert.equal(view(f).getBigUint64(140, true), 2n ** 33n);
});

test('madt: LAPIC address, one enabled local APIC per CPU, the IOAPIC, overrides, LINT1 NMI', () => {
  const m = madt({ localApicAddress: 0xfee00000, apicIds: [0, 1, 2], ioApic: { id: 0, address: 0xfec00000, gsiBase: 0 }, overrides: [{ irq: 0, gsi: 2, flags: 0 }] });
  const v = view(m);
  assert.equal(sum(m), 0);
  assert.equal(v.getUint32(36, true), 0xfee00000);
  let at = 44;
  const seen: number[][] = [];
  while (at < m.length) {
    seen.push(Array.from(m.subarray(at, at + m[at + 1]!)));
    at += m[at + 1]!;
  }
  assert.equal(at, m.length);
  assert.deepEqual(seen.slice(0, 3), [[0, 8, 0, 0, 1, 0, 0, 0], [0, 8, 1, 1, 1, 0, 0, 0], [0, 8, 2, 2, 1, 0, 0, 0]]);
  assert.deepEqual(seen[3], [1, 12, 0, 0, 0x00, 0x00, 0xc0, 0xfe, 0, 0, 0, 0]);
  assert.deepEqual(seen[4], [2, 10, 0, 0, 2, 0, 0, 0, 0, 0]);
  assert.deepEqual(seen[5], [4, 6, 0xff, 0, 0, 1]);
  assert.throws(() => madt({ localApicAddress: 0, apicIds: [255], ioApic: { id: 0, address: 0, gsiBase: 0 }, overrides: [] }));
});

test('mcfg: one ECAM allocation', () => {
  const m = mcfg({ base: 0xe0000000, segment: 0, startBus: 0, endBus: 0 });
  assert.equal(m.length, 60);
  assert.equal(view(m).getBigUint64(44, true), 0xe0000000n);
  assert.deepEqual(Array.from(m.subarray(52, 56)), [0, 0, 0, 0]);
  assert.equal(sum(m), 0);
});
