// Unit tests of the i8042 subset: Linux's probe sequence, command byte, self tests, absent AUX port, reset line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { I8042 } from '../../../src/devices/legacy/i8042.js';

const DATA = 0, CMD = 4;
const rd = (k: I8042, off: number): number => { const d = new Uint8Array(1); k.read(off, d); return d[0]!; };
const wr = (k: I8042, off: number, v: number): void => k.write(off, Uint8Array.of(v));
const kbc = (onReset: () => void = () => undefined, state?: SharedArrayBuffer): I8042 => new I8042({ onReset, state });

/** Linux's __i8042_command: command, parameter bytes, then wait for OBF (bounded) and read the replies. */
function command(k: I8042, cmd: number, params: number[], replies: number, requireAux = false): number[] | 'timeout' | 'auxerr' {
  assert.equal(rd(k, CMD) & 0x02, 0, 'input buffer never full');
  wr(k, CMD, cmd);
  for (const p of params) wr(k, DATA, p);
  const out: number[] = [];
  for (let i = 0; i < replies; i++) {
    if (!(rd(k, CMD) & 0x01)) return 'timeout';
    if (requireAux && !(rd(k, CMD) & 0x20)) return 'auxerr';
    out.push(rd(k, DATA));
  }
  return out;
}

test('status after power-on: empty buffers, system flag, keyboard not locked', () => {
  const k = kbc();
  assert.equal(rd(k, CMD), 0x14);
  assert.equal(rd(k, 1), 0xff, 'ports 0x61-0x63 are not ours');
  const wide = new Uint8Array(2).fill(0xaa);
  k.read(CMD, wide);
  assert.deepEqual([...wide], [0x14, 0]);
});

test("Linux's controller probe: flush, self test, stable CTR read, CTR write, keyboard test", () => {
  const k = kbc();
  let flushed = 0;
  while (rd(k, CMD) & 1 && flushed < 16) { rd(k, DATA); flushed++; }
  assert.equal(flushed, 0);
  assert.deepEqual(command(k, 0xaa, [], 1), [0x55]);
  const ctr = command(k, 0x20, [], 1);
  assert.deepEqual(command(k, 0x20, [], 1), ctr);
  assert.deepEqual(ctr, [0x45]);
  const next = (0x45 | 0x10) & ~0x01;
  assert.deepEqual(command(k, 0x60, [next], 0), []);
  assert.deepEqual(command(k, 0x20, [], 1), [next]);
  assert.deepEqual(command(k, 0xab, [], 1), [0x00]);
  assert.equal(rd(k, CMD) & 0x01, 0);
  assert.equal(rd(k, CMD) & 0x08, 0x08, 'the last write went to the command port');
});

test("Linux's AUX probe fails fast: the loop test reports no AUX data, the port test a stuck clock", () => {
  const k = kbc();
  assert.equal(command(k, 0xd3, [0x5a], 1, true), 'auxerr');
  // The byte Linux left unread must not be taken for the next command's reply.
  const [param] = command(k, 0xa9, [], 1) as number[];
  assert.ok(param !== 0x00 && param !== 0xfa && param !== 0xff, `AUX test answer 0x${param?.toString(16)} is excused by Linux`);
  assert.equal(rd(k, CMD) & 0x01, 0);
});

test('AUX and keyboard enable/disable show in the command byte, as i8042_toggle_aux reads it back', () => {
  const k = kbc();
  wr(k, CMD, 0xa7);
  assert.deepEqual(command(k, 0x20, [], 1), [0x65]);
  wr(k, CMD, 0xa8);
  assert.deepEqual(command(k, 0x20, [], 1), [0x45]);
  wr(k, CMD, 0xad);
  assert.deepEqual(command(k, 0x20, [], 1), [0x55]);
  wr(k, CMD, 0xae);
  assert.deepEqual(command(k, 0x20, [], 1), [0x45]);
});

test('the system flag in the status follows the command byte', () => {
  const k = kbc();
  command(k, 0x60, [0x00], 0);
  assert.equal(rd(k, CMD) & 0x04, 0);
  command(k, 0x60, [0x04], 0);
  assert.equal(rd(k, CMD) & 0x04, 0x04);
});

test('keyboard-bound bytes go nowhere; 0xD2 echoes a byte as if from the keyboard', () => {
  const k = kbc();
  wr(k, DATA, 0xff); // keyboard reset to the absent keyboard
  assert.equal(rd(k, CMD) & 0x01, 0);
  wr(k, CMD, 0xd4);
  wr(k, DATA, 0xf4); // to the absent mouse
  assert.equal(rd(k, CMD) & 0x01, 0);
  assert.deepEqual(command(k, 0xd2, [0x1c], 1), [0x1c]);
});

test('reboot=k: command 0xFE pulses the reset line, as do 0xF0-0xFD with bit 0 clear', () => {
  let resets = 0;
  const k = kbc(() => resets++);
  for (let i = 0; i < 10; i++) {
    while (rd(k, CMD) & 0x02) { /* kb_wait */ }
    wr(k, CMD, 0xfe);
  }
  assert.equal(resets, 10);
  wr(k, CMD, 0xff);
  wr(k, CMD, 0xf1);
  assert.equal(resets, 10);
  wr(k, CMD, 0xf0);
  assert.equal(resets, 11);
});

test('writing the output port with bit 0 clear resets; with it set (A20 on) it does not', () => {
  let resets = 0;
  const k = kbc(() => resets++);
  command(k, 0xd1, [0xdf], 0);
  assert.equal(resets, 0);
  assert.deepEqual(command(k, 0xd0, [], 1), [0xdf]);
  command(k, 0xd1, [0x00], 0);
  assert.equal(resets, 1);
});

test('two objects over one shared state are one controller (vCPU threads)', () => {
  const state = I8042.createState();
  let resetsA = 0;
  const a = kbc(() => resetsA++, state);
  const b = kbc(() => undefined, state);
  command(a, 0x60, [0x61], 0);
  assert.deepEqual(command(b, 0x20, [], 1), [0x61]);
  wr(a, CMD, 0xaa);
  assert.equal(rd(b, DATA), 0x55);
  wr(a, CMD, 0xfe);
  assert.equal(resetsA, 1);
});

test('property: any access sequence never throws and keeps the status register sane', () => {
  fc.assert(fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: -1, max: 6 }), fc.integer({ min: 0, max: 255 }), fc.constantFrom(0, 1, 2, 4))), (ops) => {
    const k = kbc();
    for (const [isWrite, off, v, width] of ops) {
      const d = new Uint8Array(width);
      if (width > 0) d[0] = v;
      if (isWrite) k.write(off, d);
      else k.read(off, d);
      const status = rd(k, CMD);
      assert.equal(status & 0xe2, 0, 'never input-full, AUX data, timeout or parity error');
      assert.equal(status & 0x10, 0x10);
    }
  }));
});
