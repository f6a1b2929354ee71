// Unit tests of the i8042 subset: status, command byte, self test, and the reset line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { I8042 } from '../../../src/devices/legacy/i8042.js';

const rd = (k: I8042, off: number): number => { const d = new Uint8Array(1); k.read(off, d); return d[0]!; };
const wr = (k: I8042, off: number, v: number): void => k.write(off, Uint8Array.of(v));

test('command 0xFE pulses the reset line', () => {
  let resets = 0;
  const k = new I8042({ onReset: () => resets++ });
  wr(k, 4, 0xfe);
  assert.equal(resets, 1);
});

test('self test answers 0x55 through the output buffer, and status shows it', () => {
  const k = new I8042({ onReset: () => undefined });
  assert.equal(rd(k, 4) & 1, 0);
  wr(k, 4, 0xaa);
  assert.equal(rd(k, 4) & 1, 1);
  assert.equal(rd(k, 0), 0x55);
  assert.equal(rd(k, 4) & 1, 0);
});

test('command byte round-trips through 0x60/0x20', () => {
  const k = new I8042({ onReset: () => undefined });
  wr(k, 4, 0x60);
  wr(k, 0, 0x47);
  wr(k, 4, 0x20);
  assert.equal(rd(k, 0), 0x47);
});

test('writing the output port with bit 0 clear resets; the output buffer is bounded', () => {
  let resets = 0;
  const k = new I8042({ onReset: () => resets++ });
  wr(k, 4, 0xd1);
  wr(k, 0, 0x00);
  assert.equal(resets, 1);
  for (let i = 0; i < 1000; i++) wr(k, 4, 0xaa);
  let n = 0;
  while (rd(k, 4) & 1) { rd(k, 0); n++; }
  assert.ok(n <= 16);
});
