// The entropy device's request handling: random bytes into the writable buffers only, bounded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import { fillRandom } from '../../../src/devices/virtio/rng.js';

test('fills the writable buffers, leaves readable ones and everything around them alone, stops at the cap', () => {
  fc.assert(fc.property(fc.array(fc.integer({ min: 0, max: 3000 }), { maxLength: 5 }), fc.integer({ min: 1, max: 8000 }), (lens, max) => {
    const m = GuestMemory.anonymous(0x10000);
    let at = 0x1000;
    const writable = lens.map((len) => { const b = { gpa: at, len }; at += len + 16; return b; });
    const n = fillRandom(m, { head: 0, readable: [{ gpa: 0x100, len: 64 }], writable, writableBytes: lens.reduce((a, b) => a + b, 0) }, max);
    assert.equal(n, Math.min(max, lens.reduce((a, b) => a + b, 0)));
    assert.ok(m.read(0x100, 64).every((b) => b === 0), 'readable buffer untouched');
    let left = n;
    for (const b of writable) {
      const filled = Math.min(b.len, left);
      left -= filled;
      assert.ok(m.read(b.gpa + filled, 16).every((x) => x === 0), 'nothing past what was filled');
    }
  }), { numRuns: 500 });
  const m = GuestMemory.anonymous(0x20000);
  const n = fillRandom(m, { head: 0, readable: [], writable: [{ gpa: 0, len: 0x20000 }], writableBytes: 0x20000 });
  assert.equal(n, 65536);
  const sample = m.read(0, 65536);
  assert.ok(new Set(sample).size > 250, 'looks random');
});
