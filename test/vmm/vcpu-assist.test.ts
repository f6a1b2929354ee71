// The vCPU assist's retry rule: an instruction it cannot complete is retried once (another vCPU
// may have rewritten it since KVM's failed emulation), and is fatal when it fails again unchanged.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RetryOnce } from '../../src/vmm/vcpu-assist.js';

test('an unassistable instruction is retried once, then fatal; a completed one in between starts afresh', () => {
  const r = new RetryOnce();
  const int3Gone = 'unsupported instruction [eb 38 ba 00] at rip 0xffffffff810f2801';
  assert.equal(r.retry(int3Gone), true, 'first time: it may have changed under us');
  assert.equal(r.retry(int3Gone), false, 'the same failure again: real');
  assert.equal(r.retry(int3Gone), true, 'a fresh failure after a fatal verdict is judged afresh');
  assert.equal(r.retry('unsupported instruction [0f 0b] at rip 0x1000'), true, 'a different failure is its first');
  assert.equal(r.retry('unsupported instruction [0f 0b] at rip 0x1000'), false);
  r.retry(int3Gone);
  r.reset();
  assert.equal(r.retry(int3Gone), true, 'after a completed instruction the count starts again');
});
