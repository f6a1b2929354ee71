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

test('prefixes: REX only directly before the opcode, mandatory prefixes select the instruction, LOCK is recorded', () => {
  // A legacy prefix after REX cancels it: 48 66 0f c7 0f is cmpxchg8b (no REX.W), with a 66 that makes it unknown.
  assert.equal(decode(b(0x48, 0x66, 0x0f, 0xc7, 0x0f), 64).kind, 'unknown');
  assert.equal(decode(b(0x48, 0xf0, 0x0f, 0xc7, 0x0f), 64).kind, 'cmpxchg8b');
  const lockInt3 = decode(b(0xf0, 0xcc), 64);
  assert.ok(lockInt3.kind === 'int3' && lockInt3.lock && lockInt3.length === 2);
  assert.equal(decode(b(0x66, 0x0f, 0xae, 0x30), 64).kind, 'clwb');
  assert.equal(decode(b(0x66, 0x0f, 0xae, 0x38), 64).kind, 'clflushopt');
  assert.equal(decode(b(0x0f, 0xae, 0x38), 64).kind, 'clflush');
  assert.equal(decode(b(0x0f, 0xae, 0x30), 64).kind, 'xsaveopt');
  assert.equal(decode(b(0x0f, 0xae, 0xe8), 64).kind, 'lfence');
  assert.equal(decode(b(0x0f, 0xae, 0xf8), 64).kind, 'sfence');
  assert.equal(decode(b(0xf3, 0x0f, 0xae, 0xc0), 64).kind, 'unknown'); // rdfsbase eax
  assert.equal(decode(b(0xf3, 0x0f, 0x7e, 0xc1), 64).kind, 'unknown'); // movq xmm0, xmm1
  assert.equal(decode(b(0x0f, 0x6e, 0xc1), 64).kind, 'unknown'); // MMX movd
  assert.equal(decode(b(0x0f, 0xb8, 0xc1), 64).kind, 'unknown'); // jmpe, not popcnt
  const p16 = decode(b(0x66, 0xf3, 0x0f, 0xb8, 0xc1), 64); // popcnt ax, cx
  assert.ok(p16.kind === 'popcnt' && p16.operandSize16 && p16.length === 5);
  const movq = decode(b(0x66, 0x48, 0x0f, 0x7e, 0xc0), 64); // movq rax, xmm0: 66 is mandatory here
  assert.ok(movq.kind === 'movd-from-xmm' && movq.rexW && !movq.operandSize16 && movq.rmReg === 0 && movq.reg === 0);
  // REX is an ordinary opcode (inc/dec) outside 64-bit mode.
  assert.equal(decode(b(0x48, 0xcc), 32).kind, 'unknown');
  const rdrand = decode(b(0x49, 0x0f, 0xc7, 0xf7), 64); // rdrand r15
  assert.ok(rdrand.kind === 'rdrand' && rdrand.rmReg === 15 && rdrand.rexW);
  assert.equal(decode(b(0x0f, 0xc7, 0xff), 64).kind, 'rdseed');
  assert.equal(decode(b(0x0f, 0x01, 0xd0), 64).kind, 'xgetbv');
  const int80 = decode(b(0xcd, 0x80), 64);
  assert.ok(int80.kind === 'int' && int80.imm === 0x80);
});

test('addressing: 32-bit mode disp32 is absolute, 67 truncates to 32 bits, 16-bit ModRM forms', () => {
  const abs = decode(b(0x0f, 0xae, 0x15, 0x78, 0x56, 0x34, 0x12), 32); // ldmxcsr [0x12345678]
  assert.ok(abs.kind === 'ldmxcsr' && abs.mem && !abs.mem.ripRelative && abs.length === 7);
  assert.equal(effectiveAddress(abs.mem, gpr, 0x999n), 0x12345678n);
  const a32 = decode(b(0x67, 0x0f, 0xae, 0x50, 0xf0), 64); // ldmxcsr [eax-16]
  assert.ok(a32.kind === 'ldmxcsr' && a32.mem && a32.mem.addressSize === 32);
  assert.equal(effectiveAddress(a32.mem, gpr, 0n), 0xfffffff0n);
  const rel32 = decode(b(0x67, 0x0f, 0xae, 0x15, 0x10, 0, 0, 0), 64); // [eip+0x10]
  assert.ok(rel32.kind === 'ldmxcsr' && rel32.mem?.ripRelative === true);
  assert.equal(effectiveAddress(rel32.mem, gpr, 0x1_0000_0008n), 0x18n);
  const bp = decode(b(0x0f, 0xae, 0x52, 0x04), 16); // ldmxcsr [bp+si+4]
  assert.ok(bp.kind === 'ldmxcsr' && bp.mem && bp.length === 4);
  assert.equal(bp.mem.segment, 'ss');
  assert.equal(effectiveAddress(bp.mem, gpr, 0n), (0x5000n + 0x6000n + 4n) & 0xffffn);
  const d16 = decode(b(0x0f, 0xae, 0x16, 0x34, 0x12), 16); // ldmxcsr [0x1234]
  assert.ok(d16.kind === 'ldmxcsr' && d16.mem && d16.length === 5);
  assert.equal(d16.mem.segment, 'ds');
  assert.equal(effectiveAddress(d16.mem, gpr, 0n), 0x1234n);
  const wrap = decode(b(0x0f, 0xae, 0x97, 0x00, 0xf0), 16); // [bx-0x1000] wraps at 64 KiB
  assert.ok(wrap.kind === 'ldmxcsr' && wrap.mem);
  assert.equal(effectiveAddress(wrap.mem, gpr, 0n), 0x2000n);
  const r13 = decode(b(0x41, 0x0f, 0xae, 0x55, 0x00), 64); // [r13+0]: DS, not SS
  assert.ok(r13.kind === 'ldmxcsr' && r13.mem);
  assert.equal(r13.mem.segment, 'ds');
  assert.equal(r13.mem.base, 13);
  const sib = decode(b(0x43, 0x0f, 0xae, 0x5c, 0xfc, 0x80), 64); // stmxcsr [r12 + r15*8 - 128]
  assert.ok(sib.kind === 'stmxcsr' && sib.mem);
  assert.equal(effectiveAddress(sib.mem, gpr, 0n), 0xc000n + 0xf000n * 8n - 128n);
  const noIndex = decode(b(0x0f, 0xae, 0x14, 0x24), 64); // [rsp]: SIB index 4 means none
  assert.ok(noIndex.kind === 'ldmxcsr' && noIndex.mem && noIndex.mem.index === undefined && noIndex.mem.segment === 'ss');
});

test('unknown and truncated instructions are reported, not thrown', () => {
  assert.equal(decode(b(0x0f, 0xfe, 0xc1), 64).kind, 'unknown');
  assert.equal(decode(b(0x0f, 0xae), 64).kind, 'unknown');
  assert.equal(decode(b(), 64).kind, 'unknown');
  assert.equal(decode(new Uint8Array(20).fill(0x66), 64).kind, 'unknown');
  assert.equal(decode(b(0x0f, 0xae, 0x14), 64).kind, 'unknown'); // SIB missing
  assert.equal(decode(b(0x0f, 0xae, 0x15, 0, 0), 64).kind, 'unknown'); // disp32 cut short
  // 14 prefixes + a 1-byte opcode is 15 bytes (legal); one more prefix is not.
  assert.equal(decode(b(...new Array<number>(14).fill(0x3e), 0xcc), 64).kind, 'int3');
  assert.equal(decode(b(...new Array<number>(15).fill(0x3e), 0xcc), 64).kind, 'unknown');
  const u = decode(b(0x0f, 0xfe, 0xc1), 64);
  assert.ok(u.kind === 'unknown' && /0f fe/.test(u.reason));
});

test('property: any bytes decode to a length in 1..15 or to unknown, never an exception', () => {
  fc.assert(fc.property(fc.uint8Array({ maxLength: 20 }), fc.constantFrom(16, 32, 64), (bytes, mode) => {
    const d = decode(bytes, mode);
    if (d.kind !== 'unknown') assert.ok(d.length >= 1 && d.length <= 15 && d.length <= bytes.length);
  }), { numRuns: 20000 });
});
