// Unit tests of the assist's instruction decoder: golden encodings, effective addresses, random bytes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decode, effectiveAddress } from '../../../../src/arch/x86_64/assist/decoder.js';

const b = (...x: number[]): Uint8Array => Uint8Array.from(x);
const gpr = Array.from({ length: 16 }, (_, i) => BigInt(i) * 0x1000n);

test('golden decodes: kind and length', () => {
  const cases: [number[], string, number][] = [
    [[0xcc], 'int3', 1],
    [[0xcd, 0x80], 'int', 2],
    [[0x0f, 0x0b], 'ud2', 2],
    [[0x9b], 'fwait', 1],
    [[0x0f, 0xae, 0x55, 0x08], 'ldmxcsr', 4], // [rbp+8]
    [[0x0f, 0xae, 0x1d, 0, 0, 0, 0], 'stmxcsr', 7], // [rip+0]
    [[0x48, 0x0f, 0xae, 0x2c, 0x24], 'xrstor', 5], // xrstor64 [rsp]
    [[0x0f, 0xae, 0x27], 'xsave', 3],
    [[0x0f, 0xae, 0xf0], 'mfence', 3],
    [[0x0f, 0x01, 0xd1], 'xsetbv', 3],
    [[0x48, 0x0f, 0xc7, 0xf0], 'rdrand', 4],
    [[0xf0, 0x48, 0x0f, 0xc7, 0x0f], 'cmpxchg16b', 5],
    [[0xf3, 0x48, 0x0f, 0xb8, 0xc1], 'popcnt', 5],
    [[0x66, 0x44, 0x0f, 0x6e, 0xf9], 'movd-to-xmm', 5], // movd xmm15, ecx (seen in Debian's kernel)
    [[0x65, 0x0f, 0xae, 0x14, 0x25, 0x10, 0, 0, 0], 'ldmxcsr', 9], // gs:[0x10] via SIB, no base
  ];
  for (const [bytes, kind, length] of cases) {
    const d = decode(b(...bytes), 64);
    assert.equal(d.kind, kind, bytes.map((x) => x.toString(16)).join(' '));
    assert.ok('length' in d && d.length === length, `${kind}: length`);
  }
});

test('operands: registers with REX, memory with SIB, displacement and RIP-relative addressing', () => {
  const movd = decode(b(0x66, 0x44, 0x0f, 0x6e, 0xf9), 64);
  assert.ok(movd.kind === 'movd-to-xmm');
  assert.equal(movd.reg, 15);
  assert.equal(movd.rmReg, 1);
  const ld = decode(b(0x0f, 0xae, 0x54, 0x8b, 0xf0), 64); // ldmxcsr [rbx + rcx*4 - 16]
  assert.ok(ld.kind === 'ldmxcsr' && ld.mem);
  assert.equal(effectiveAddress(ld.mem, gpr, 0n), 0x3000n + 0x1000n * 4n - 16n);
  const rel = decode(b(0x0f, 0xae, 0x1d, 0x10, 0, 0, 0), 64);
  assert.ok(rel.kind === 'stmxcsr' && rel.mem);
  assert.equal(effectiveAddress(rel.mem, gpr, 0x100007n), 0x100017n);
  const gs = decode(b(0x65, 0x0f, 0xae, 0x14, 0x25, 0x10, 0, 0, 0), 64);
  assert.ok(gs.kind === 'ldmxcsr' && gs.mem);
  assert.equal(gs.mem.segment, 'gs');
  assert.equal(effectiveAddress(gs.mem, gpr, 0n), 0x10n);
  const ss = decode(b(0x0f, 0xae, 0x55, 0x08), 64);
  assert.ok(ss.kind === 'ldmxcsr' && ss.mem);
  assert.equal(ss.mem.segment, 'ss');
});

test('unknown and truncated instructions are reported, not thrown', () => {
  assert.equal(decode(b(0x0f, 0xfe, 0xc1), 64).kind, 'unknown');
  assert.equal(decode(b(0x0f, 0xae), 64).kind, 'unknown');
  assert.equal(decode(b(), 64).kind, 'unknown');
  assert.equal(decode(new Uint8Array(20).fill(0x66), 64).kind, 'unknown');
});

test('property: any bytes decode to a length in 1..15 or to unknown, never an exception', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 20 }), fc.constantFrom(16, 32, 64), (bytes, mode) => {
    const d = decode(bytes, mode);
    if (d.kind !== 'unknown') assert.ok(d.length >= 1 && d.length <= 15 && d.length <= bytes.length);
  }), { numRuns: 20000 });
});
