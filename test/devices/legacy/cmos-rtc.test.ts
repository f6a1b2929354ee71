// Unit tests of the CMOS RTC: BCD and binary time of day from the clock, status registers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CmosRtc } from '../../../src/devices/legacy/cmos-rtc.js';

const at = new Date(Date.UTC(2026, 10, 24, 17, 45, 59));
const reg = (r: CmosRtc, i: number): number => { r.write(0, Uint8Array.of(i)); const d = new Uint8Array(1); r.read(1, d); return d[0]!; };

test('reports the clock in BCD, 24-hour mode by default', () => {
  const r = new CmosRtc({ now: () => at });
  assert.deepEqual([0, 2, 4, 7, 8, 9, 0x32].map((i) => reg(r, i)), [0x59, 0x45, 0x17, 0x24, 0x11, 0x26, 0x20]);
  assert.equal(reg(r, 0x0d), 0x80);
  assert.equal(reg(r, 0x0a) & 0x80, 0);
});

test('binary mode and 12-hour mode follow register B', () => {
  const r = new CmosRtc({ now: () => at });
  r.write(0, Uint8Array.of(0x0b));
  r.write(1, Uint8Array.of(0x04)); // binary, 12-hour
  assert.equal(reg(r, 0), 59);
  assert.equal(reg(r, 4), 0x80 | 5);
});

test('plain CMOS bytes are writable; time registers and NMI bit are not guest-settable', () => {
  const r = new CmosRtc({ now: () => at });
  r.write(0, Uint8Array.of(0x80 | 0x40));
  r.write(1, Uint8Array.of(0x12));
  assert.equal(reg(r, 0x40), 0x12);
  r.write(0, Uint8Array.of(0));
  r.write(1, Uint8Array.of(0x01));
  assert.equal(reg(r, 0), 0x59);
});
