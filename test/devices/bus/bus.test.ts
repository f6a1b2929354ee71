// Unit tests of the address bus: dispatch by range, overlaps refused, unmapped reads as all ones.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Bus } from '../../../src/devices/bus/bus.js';
import type { BusDevice } from '../../../src/devices/bus-device.js';

function recorder(log: string[], name: string): BusDevice {
  return {
    read: (off, d) => { log.push(`${name} r ${off}`); d.fill(off); },
    write: (off, d) => { log.push(`${name} w ${off}=${d[0]}`); },
  };
}

test('dispatches to the device owning the address with the offset from its base', () => {
  const log: string[] = [];
  const bus = new Bus();
  bus.insert(0x3f8, 8, recorder(log, 'uart'));
  bus.insert(0x60, 5, recorder(log, 'kbd'));
  bus.insert(0x70, 2, recorder(log, 'rtc'));
  const d = new Uint8Array(1);
  assert.equal(bus.read(0x3fd, d), true);
  assert.equal(d[0], 5);
  assert.equal(bus.write(0x64, Uint8Array.of(0xfe)), true);
  assert.equal(bus.write(0x71, Uint8Array.of(1)), true);
  assert.deepEqual(log, ['uart r 5', 'kbd w 4=254', 'rtc w 1=1']);
});

test('unmapped addresses read as all ones and ignore writes', () => {
  const bus = new Bus();
  bus.insert(0x100, 4, recorder([], 'x'));
  const d = new Uint8Array(4);
  assert.equal(bus.read(0x104, d), false);
  assert.deepEqual([...d], [0xff, 0xff, 0xff, 0xff]);
  assert.equal(bus.write(0xff, d), false);
});

test('overlapping and empty ranges are refused', () => {
  const bus = new Bus();
  bus.insert(0x100, 0x10, recorder([], 'a'));
  assert.throws(() => bus.insert(0x10f, 1, recorder([], 'b')), /overlaps/);
  assert.throws(() => bus.insert(0xf0, 0x11, recorder([], 'b')), /overlaps/);
  assert.throws(() => bus.insert(0x200, 0, recorder([], 'b')), /bad bus range/);
  bus.insert(0x110, 1, recorder([], 'c'));
});

test('lookup stays right with many devices inserted in any order', () => {
  const bus = new Bus();
  const bases = Array.from({ length: 64 }, (_, i) => i * 16).sort(() => Math.random() - 0.5);
  for (const b of bases) bus.insert(b, 8, { read: (_o, d) => d.fill(b & 0xff), write: () => undefined });
  const d = new Uint8Array(1);
  for (const b of bases) {
    assert.equal(bus.read(b + 7, d), true);
    assert.equal(d[0], b & 0xff);
    assert.equal(bus.read(b + 8, d), false);
  }
});
