// Unit tests of the boot MSR list.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bootMsrs } from '../../../src/arch/x86_64/msrs.js';

test('boot MSRs: syscall MSRs zero, fast strings on, MTRRs enabled write-back, no TSC', () => {
  const m = new Map(bootMsrs().map((e) => [e.index, e.data]));
  assert.equal(m.size, 10);
  for (const i of [0x174, 0x175, 0x176, 0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, 0xc0000102]) assert.equal(m.get(i), 0n);
  assert.equal(m.get(0x1a0), 1n);
  assert.equal(m.get(0x2ff), 0x806n);
  assert.equal(m.has(0x10), false);
});
