// Unit tests of the address bus: dispatch by range, overlaps refused, unmapped reads as all ones, removal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Bus } from '../../../src/devices/bus/bus.js';
import { TypevisorError } from '../../../src/base/errors.js';
import type { BusDevice } from '../../../src/devices/bus-device.js';

function recorder(log: string[], name: string): BusDevice {
  return {
    read: (off, d) => { log.push(`${name} r ${off}`); d.fill(off); },
    write: (off, d) => { log.push(`${name} w ${off}=${d[0]}`); },
  };
}
const nop: BusDevice = { read: () => undefined, write: () => undefined };
const isInvalidArgument = (e: unknown): boolean => e instanceof TypevisorError && e.code === 'INVALID_ARGUMENT';

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

test('unmapped addresses read as all ones (every byte of the access) and ignore writes', () => {
  const bus = new Bus();
  bus.insert(0x100, 4, recorder([], 'x'));
  const d = new Uint8Array(4);
  assert.equal(bus.read(0x104, d), false);
  assert.deepEqual([...d], [0xff, 0xff, 0xff, 0xff]);
  assert.equal(bus.read(0xff, d), false);
  assert.equal(bus.write(0xff, d), false);
  assert.equal(new Bus().read(0, d), false);
});

test('overlapping, empty and out-of-range ranges are refused with INVALID_ARGUMENT; adjacent ones are fine', () => {
  const bus = new Bus();
  bus.insert(0x100, 0x10, nop);
  assert.throws(() => bus.insert(0x10f, 1, nop), isInvalidArgument);
  assert.throws(() => bus.insert(0xf0, 0x11, nop), isInvalidArgument);
  assert.throws(() => bus.insert(0x80, 0x100, nop), isInvalidArgument);
  assert.throws(() => bus.insert(0x104, 2, nop), isInvalidArgument);
  assert.throws(() => bus.insert(0x100, 0x10, nop), /overlaps 0x100-0x10f/);
  assert.throws(() => bus.insert(0x200, 0, nop), isInvalidArgument);
  assert.throws(() => bus.insert(-1, 1, nop), isInvalidArgument);
  assert.throws(() => bus.insert(0.5, 1, nop), isInvalidArgument);
  assert.throws(() => bus.insert(Number.MAX_SAFE_INTEGER, 2, nop), isInvalidArgument);
  bus.insert(0x110, 1, nop);
  bus.insert(0xf0, 0x10, nop);
});

test('remove unmaps exactly the range starting at base, which can then be mapped elsewhere', () => {
  const bus = new Bus();
  const dev = recorder([], 'bar');
  bus.insert(0x1000, 0x100, dev);
  bus.insert(0x2000, 0x100, nop);
  assert.equal(bus.remove(0x1001), undefined);
  assert.equal(bus.remove(0x3000), undefined);
  assert.equal(bus.remove(0x1000), dev);
  assert.equal(bus.read(0x1000, new Uint8Array(1)), false);
  assert.equal(bus.read(0x2000, new Uint8Array(1)), true);
  bus.insert(0x1080, 0x100, dev);
  assert.equal(bus.read(0x117f, new Uint8Array(1)), true);
});

test('property: lookup agrees with a linear scan for any set of inserted ranges', () => {
  fc.assert(fc.property(
    fc.array(fc.tuple(fc.integer({ min: 0, max: 0x1000 }), fc.integer({ min: 1, max: 0x40 })), { maxLength: 40 }),
    fc.array(fc.integer({ min: 0, max: 0x1100 }), { maxLength: 50 }),
    (ranges, probes) => {
      const bus = new Bus();
      const mapped: { base: number; end: number; id: number }[] = [];
      ranges.forEach(([base, len], id) => {
        const overlaps = mapped.some((m) => base < m.end && m.base < base + len);
        const dev: BusDevice = { read: (off, d) => { d[0] = id; d[1] = off; }, write: () => undefined };
        if (overlaps) assert.throws(() => bus.insert(base, len, dev), isInvalidArgument);
        else { bus.insert(base, len, dev); mapped.push({ base, end: base + len, id }); }
      });
      for (const addr of probes) {
        const want = mapped.find((m) => addr >= m.base && addr < m.end);
        const d = new Uint8Array(2);
        assert.equal(bus.read(addr, d), want !== undefined);
        if (want) assert.deepEqual([...d], [want.id, addr - want.base]);
        else assert.deepEqual([...d], [0xff, 0xff]);
      }
    }));
});
