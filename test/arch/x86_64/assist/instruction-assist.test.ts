// Unit tests of the instruction assist over a fake vCPU: what each completed instruction does to the state.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { GuestMemory } from '../../../../src/memory/guest-memory.js';
import { InstructionAssist, type AssistVcpu } from '../../../../src/arch/x86_64/assist/instruction-assist.js';
import { zeroRegs, type Regs, type Sregs, type Segment } from '../../../../src/kvm/structs.js';
import { writeIdentityPageTables } from '../../../../src/arch/x86_64/page-tables.js';
import { LAYOUT } from '../../../../src/arch/x86_64/layout.js';

const seg = (over: Partial<Segment> = {}): Segment =>
  ({ base: 0n, limit: 0xffffffff, selector: 0x10, type: 11, present: 1, dpl: 0, db: 0, s: 1, l: 1, g: 1, avl: 0, unusable: 0, ...over });

const CODE = 0x100000;
const DATA = 0x200000;

class FakeVcpu implements AssistVcpu {
  regs: Regs = zeroRegs();
  xsave = new Uint8Array(4096);
  xcr0 = 3n;
  injected: { vector: number; errorCode?: number | undefined }[] = [];
  setRegsCalls = 0;
  sregs: Sregs = {
    cs: seg(), ds: seg(), es: seg(), fs: seg({ base: 0x280000n }), gs: seg({ base: 0x300000n }), ss: seg(), tr: seg(), ldt: seg(),
    gdt: { base: 0n, limit: 0 }, idt: { base: 0n, limit: 0 },
    cr0: 0x80010011n, cr2: 0n, cr3: BigInt(LAYOUT.PML4), cr4: 0x20n, cr8: 0n, efer: 0x500n, apic_base: 0n,
    interrupt_bitmap: [0n, 0n, 0n, 0n],
  };
  constructor() {
    this.regs.rflags = 2n;
    this.view.setUint16(0, 0x37f, true);
    this.view.setUint32(24, 0x1f80, true);
    this.view.setUint32(28, 0xffff, true);
  }
  get view(): DataView { return new DataView(this.xsave.buffer); }
  getRegs(): Regs { return { ...this.regs }; }
  setRegs(r: Regs): void { this.regs = { ...r }; this.setRegsCalls++; }
  getSregs(): Sregs { return this.sregs; }
  getXsave(): Uint8Array { return this.xsave.slice(); }
  setXsave(a: Uint8Array): void { this.xsave = a.slice(); }
  getXcr0(): bigint { return this.xcr0; }
  injectException(vector: number, errorCode?: number): void { this.injected.push({ vector, errorCode }); }
}

function setup(code: number[]): { m: GuestMemory; cpu: FakeVcpu; assist: InstructionAssist } {
  const m = GuestMemory.anonymous(8 << 20);
  writeIdentityPageTables(m);
  m.write(CODE, Uint8Array.from(code));
  const cpu = new FakeVcpu();
  cpu.regs.rip = BigInt(CODE);
  return { m, cpu, assist: new InstructionAssist(m) };
}

/** Replaces the 2 MiB identity page at `va` with a page table whose 4 KiB pages map to `frames` (0 = not present). */
function split(m: GuestMemory, va: number, frames: number[], pt = 0x7f0000): void {
  m.fill(pt, 4096, 0);
  frames.forEach((f, i) => { if (f) m.setU64(pt + i * 8, BigInt(f) | 3n); });
  m.setU64(LAYOUT.PD + (va >> 21) * 8, BigInt(pt) | 3n);
}

const handled = (r: ReturnType<InstructionAssist['handle']>, kind: string): void => {
  assert.deepEqual(r, { handled: true, kind }, JSON.stringify(r));
};

test('int3 is a trap: RIP moves past it and #BP is injected', () => {
  const { cpu, assist } = setup([0xcc]);
  handled(assist.handle(cpu), 'int3');
  assert.equal(cpu.regs.rip, BigInt(CODE + 1));
  assert.deepEqual(cpu.injected, [{ vector: 3, errorCode: undefined }]);
  assert.deepEqual(assist.counts(), { int3: 1 });
});

test('int 3 and int 4 are injected as exceptions; other software interrupts are reported', () => {
  const a = setup([0xcd, 0x04]);
  handled(a.assist.handle(a.cpu), 'int');
  assert.equal(a.cpu.regs.rip, BigInt(CODE + 2));
  assert.equal(a.cpu.injected[0]!.vector, 4);
  const b = setup([0xcd, 0x80]);
  const r = b.assist.handle(b.cpu);
  assert.ok(!r.handled && /cd 80/.test(r.report) && /software interrupt 128/.test(r.report));
  assert.equal(b.cpu.regs.rip, BigInt(CODE));
  assert.deepEqual(b.cpu.injected, []);
});

test('ud2 is a fault: RIP stays and #UD is injected; fwait and fences are stepped over; LOCK on them is #UD', () => {
  const a = setup([0x0f, 0x0b]);
  handled(a.assist.handle(a.cpu), 'ud2');
  assert.equal(a.cpu.regs.rip, BigInt(CODE));
  assert.equal(a.cpu.setRegsCalls, 0);
  assert.equal(a.cpu.injected[0]!.vector, 6);
  const b = setup([0x9b, 0x0f, 0xae, 0xf0]);
  handled(b.assist.handle(b.cpu), 'fwait');
  handled(b.assist.handle(b.cpu), 'mfence');
  assert.equal(b.cpu.regs.rip, BigInt(CODE + 4));
  assert.deepEqual(b.cpu.injected, []);
  assert.deepEqual(b.assist.counts(), { fwait: 1, mfence: 1 });
  const c = setup([0xf0, 0xcc]);
  handled(c.assist.handle(c.cpu), 'int3');
  assert.deepEqual(c.cpu.injected, [{ vector: 6, errorCode: undefined }]);
  assert.equal(c.cpu.regs.rip, BigInt(CODE));
});

test('ldmxcsr reads through the page tables with a GS base and marks SSE in use; reserved bits raise #GP(0)', () => {
  const { m, cpu, assist } = setup([0x65, 0x0f, 0xae, 0x14, 0x25, 0x10, 0, 0, 0]); // ldmxcsr gs:[0x10]
  m.setU32(0x300010, 0x9f80);
  handled(assist.handle(cpu), 'ldmxcsr');
  assert.equal(cpu.view.getUint32(24, true), 0x9f80);
  // KVM_SET_XSAVE ignores MXCSR unless XSTATE_BV has x87, SSE or AVX set.
  assert.equal(cpu.view.getBigUint64(512, true), 2n);
  assert.equal(cpu.regs.rip, BigInt(CODE + 9));
  m.setU32(0x300010, 0x10000);
  cpu.regs.rip = BigInt(CODE);
  assist.handle(cpu);
  assert.deepEqual(cpu.injected.at(-1), { vector: 13, errorCode: 0 });
  assert.equal(cpu.regs.rip, BigInt(CODE));
  assert.equal(cpu.view.getUint32(24, true), 0x9f80);
});

test('ldmxcsr with a RIP-relative operand on 4 KiB pages; stmxcsr writes MXCSR back', () => {
  const { m, cpu, assist } = setup([]);
  // Code at va 0x400000 lives in frame 0x180000; its data at va 0x401000 in frame 0x190000.
  split(m, 0x400000, [0x180000, 0x190000]);
  m.write(0x180000, Uint8Array.of(0x0f, 0xae, 0x15, 0xf9, 0x0f, 0, 0, 0x0f, 0xae, 0x1d, 0xf6, 0x0f, 0, 0)); // ldmxcsr [rip+0xff9]; stmxcsr [rip+0xff6]
  m.setU32(0x190000, 0x1fa0);
  cpu.regs.rip = 0x400000n;
  handled(assist.handle(cpu), 'ldmxcsr');
  assert.equal(cpu.view.getUint32(24, true), 0x1fa0);
  cpu.view.setUint32(24, 0x1f81, true);
  handled(assist.handle(cpu), 'stmxcsr');
  assert.equal(m.getU32(0x190004), 0x1f81);
  assert.equal(cpu.regs.rip, 0x40000en);
});

test('an instruction split across two pages is fetched through two translations', () => {
  const { m, cpu, assist } = setup([]);
  split(m, 0x400000, [0x180000, 0x1a0000]);
  m.write(0x180000 + 4094, Uint8Array.of(0x65, 0x0f));
  m.write(0x1a0000, Uint8Array.of(0xae, 0x14, 0x25, 0x10, 0, 0, 0)); // ldmxcsr gs:[0x10]
  m.setU32(0x300010, 0x1f00);
  cpu.regs.rip = 0x400ffen;
  handled(assist.handle(cpu), 'ldmxcsr');
  assert.equal(cpu.view.getUint32(24, true), 0x1f00);
  // An int3 in the last byte of a page before an unmapped one still runs (the fetch is shortened).
  split(m, 0x400000, [0x180000]);
  m.setU8(0x180fff, 0xcc);
  cpu.regs.rip = 0x400fffn;
  handled(assist.handle(cpu), 'int3');
});

test('memory operands that do not translate are reported, not guessed', () => {
  const { cpu, assist } = setup([0x0f, 0xae, 0x13]); // ldmxcsr [rbx]
  cpu.regs.rbx = 0x7fff00000000n;
  const r = assist.handle(cpu);
  assert.ok(!r.handled && /memory operand/.test(r.report) && /not present/.test(r.report), !r.handled ? r.report : '');
  assert.equal(cpu.regs.rip, BigInt(CODE));
});

test('xsave then xrstor round-trips x87/SSE state through guest memory, with XSTATE_BV', () => {
  // xsave [rbx]; then xrstor [rbx]  (rbx = DATA, EDX:EAX = 3)
  const { m, cpu, assist } = setup([0x0f, 0xae, 0x23, 0x0f, 0xae, 0x2b]);
  cpu.regs.rbx = BigInt(DATA);
  cpu.regs.rax = 3n;
  cpu.xsave.fill(0x11, 160, 160 + 256); // XMM registers
  cpu.view.setBigUint64(512, 3n, true);
  m.fill(DATA + 600, 8, 0x77); // beyond RFBM: left alone
  handled(assist.handle(cpu), 'xsave');
  assert.equal(m.getU8(DATA + 160), 0x11);
  assert.equal(m.getU64(DATA + 512), 3n);
  assert.equal(m.getU32(DATA + 24), 0x1f80);
  assert.equal(m.getU16(DATA), 0x37f);
  assert.equal(m.getU8(DATA + 600), 0x77);
  // Change the image, restore it, and see the vCPU state follow.
  m.fill(DATA + 160, 16, 0x22);
  m.setU32(DATA + 24, 0x1fa0);
  cpu.xsave.fill(0, 160, 416);
  handled(assist.handle(cpu), 'xrstor');
  assert.equal(cpu.xsave[160], 0x22);
  assert.equal(cpu.xsave[176], 0x11);
  assert.equal(cpu.view.getUint32(24, true), 0x1fa0);
  // A component whose XSTATE_BV bit is clear in memory is restored to its initial state.
  cpu.regs.rip = BigInt(CODE + 3);
  m.setU64(DATA + 512, 0n);
  cpu.view.setUint16(0, 0x27f, true);
  handled(assist.handle(cpu), 'xrstor');
  assert.equal(cpu.xsave[160], 0);
  assert.equal(cpu.view.getUint16(0, true), 0x37f);
  // MXCSR was still loaded, so SSE stays marked in use for KVM_SET_XSAVE.
  assert.equal(cpu.view.getUint32(24, true), 0x1fa0);
  assert.equal(cpu.view.getBigUint64(512, true), 2n);
  assert.deepEqual(assist.counts(), { xsave: 1, xrstor: 2 });
});

test('xrstor restores AVX (YMM_Hi128) and AVX-512 opmask state at their standard offsets', () => {
  const { m, cpu, assist } = setup([0x48, 0x0f, 0xae, 0x2b]); // xrstor64 [rbx]
  cpu.xcr0 = 0xe7n;
  cpu.regs.rbx = BigInt(DATA);
  cpu.regs.rax = 0xffffffffn;
  cpu.regs.rdx = 0xffffffffn;
  m.setU64(DATA + 512, 0x27n); // x87, SSE, AVX, opmask in memory; ZMM_Hi256 and Hi16_ZMM initial
  m.setU32(DATA + 24, 0x1f80);
  m.fill(DATA + 576, 256, 0x33);
  m.fill(DATA + 1088, 64, 0x44);
  m.fill(DATA + 1152, 512, 0x55);
  cpu.xsave.fill(0x66, 1152, 1664);
  handled(assist.handle(cpu), 'xrstor');
  assert.equal(cpu.xsave[576], 0x33);
  assert.equal(cpu.xsave[831], 0x33);
  assert.equal(cpu.xsave[1088], 0x44);
  assert.equal(cpu.xsave[1152], 0, 'ZMM_Hi256 is put in its initial state, not read from memory');
  assert.equal(cpu.view.getBigUint64(512, true), 0x27n);
});

test('xsave with a VMM-supplied layout; a requested component without a known offset is reported', () => {
  const m = GuestMemory.anonymous(8 << 20);
  writeIdentityPageTables(m);
  m.write(CODE, Uint8Array.of(0x0f, 0xae, 0x23)); // xsave [rbx]
  const cpu = new FakeVcpu();
  cpu.regs.rip = BigInt(CODE);
  cpu.regs.rbx = BigInt(DATA);
  cpu.regs.rax = 0xffffffffn;
  cpu.xcr0 = 0x207n; // x87, SSE, AVX, PKRU
  cpu.view.setBigUint64(512, 0x207n, true);
  cpu.xsave.fill(0x12, 576, 832);
  cpu.view.setUint32(2432, 0x55555554, true); // PKRU where this (AMD-like) CPUID layout puts it
  const assist = new InstructionAssist(m, [{ component: 9, offset: 2432, size: 8 }]);
  handled(assist.handle(cpu), 'xsave');
  assert.equal(m.getU8(DATA + 576), 0x12);
  assert.equal(m.getU32(DATA + 2432), 0x55555554);
  assert.equal(m.getU64(DATA + 512), 0x207n);
  cpu.regs.rip = BigInt(CODE);
  cpu.xcr0 = 0x60007n; // AMX tile config/data: not in any layout
  const r = assist.handle(cpu);
  assert.ok(!r.handled && /component 17/.test(r.report));
});

test('xrstor faults: misaligned area, XSTATE_BV outside XCR0, reserved header bytes, reserved MXCSR; compacted is reported', () => {
  const fresh = (): ReturnType<typeof setup> => {
    const s = setup([0x0f, 0xae, 0x2b]);
    s.cpu.regs.rbx = BigInt(DATA);
    s.cpu.regs.rax = 3n;
    s.m.setU32(DATA + 24, 0x1f80);
    s.m.setU64(DATA + 512, 3n);
    return s;
  };
  const gp = (s: ReturnType<typeof setup>): void => {
    const before = s.cpu.xsave.slice();
    handled(s.assist.handle(s.cpu), 'xrstor');
    assert.deepEqual(s.cpu.injected, [{ vector: 13, errorCode: 0 }]);
    assert.equal(s.cpu.regs.rip, BigInt(CODE), 'a fault leaves RIP on the instruction');
    assert.deepEqual(s.cpu.xsave, before, 'and the state untouched');
  };
  const a = fresh();
  a.cpu.regs.rbx = BigInt(DATA + 16);
  gp(a);
  const b = fresh();
  b.m.setU64(DATA + 512, 4n);
  gp(b);
  const c = fresh();
  c.m.setU64(DATA + 528, 1n);
  gp(c);
  const d = fresh();
  d.m.setU32(DATA + 24, 0x40000);
  gp(d);
  const e = fresh();
  e.m.setU64(DATA + 520, (1n << 63n) | 3n);
  const r = e.assist.handle(e.cpu);
  assert.ok(!r.handled && /compacted/.test(r.report));
});

test('fxsave and fxrstor move the 512-byte legacy region', () => {
  const { m, cpu, assist } = setup([0x48, 0x0f, 0xae, 0x03, 0x48, 0x0f, 0xae, 0x0b]); // fxsave64 [rbx]; fxrstor64 [rbx]
  cpu.regs.rbx = BigInt(DATA);
  cpu.xsave.fill(0x5a, 32, 416);
  m.fill(DATA + 416, 96, 0xee);
  handled(assist.handle(cpu), 'fxsave');
  assert.equal(m.getU16(DATA), 0x37f);
  assert.equal(m.getU32(DATA + 24), 0x1f80);
  assert.equal(m.getU8(DATA + 415), 0x5a);
  assert.equal(m.getU8(DATA + 416), 0xee, 'bytes 416..511 belong to software');
  m.fill(DATA + 160, 16, 0x01);
  m.setU32(DATA + 24, 0x1f84);
  handled(assist.handle(cpu), 'fxrstor');
  assert.equal(cpu.xsave[160], 0x01);
  assert.equal(cpu.view.getUint32(24, true), 0x1f84);
  assert.equal(cpu.view.getBigUint64(512, true) & 3n, 3n);
  assert.equal(cpu.regs.rip, BigInt(CODE + 8));
});

test('cmpxchg16b: equal → store RCX:RBX and set ZF; different → load RDX:RAX and clear ZF; misaligned → #GP', () => {
  const { m, cpu, assist } = setup([0xf0, 0x48, 0x0f, 0xc7, 0x0e]); // lock cmpxchg16b [rsi]
  cpu.regs.rsi = BigInt(DATA);
  m.setU64(DATA, 1n);
  m.setU64(DATA + 8, 2n);
  Object.assign(cpu.regs, { rax: 1n, rdx: 2n, rbx: 0xaan, rcx: 0xbbn });
  handled(assist.handle(cpu), 'cmpxchg16b');
  assert.equal(m.getU64(DATA), 0xaan);
  assert.equal(m.getU64(DATA + 8), 0xbbn);
  assert.equal(cpu.regs.rflags & 0x40n, 0x40n);
  cpu.regs.rip = BigInt(CODE);
  handled(assist.handle(cpu), 'cmpxchg16b');
  assert.equal(cpu.regs.rax, 0xaan);
  assert.equal(cpu.regs.rdx, 0xbbn);
  assert.equal(cpu.regs.rflags & 0x40n, 0n);
  assert.equal(m.getU64(DATA), 0xaan);
  cpu.regs.rip = BigInt(CODE);
  cpu.regs.rsi = BigInt(DATA + 8);
  handled(assist.handle(cpu), 'cmpxchg16b');
  assert.deepEqual(cpu.injected, [{ vector: 13, errorCode: 0 }]);
});

test('popcnt, xgetbv and rdrand write their registers and flags', () => {
  const { m, cpu, assist } = setup([0xf3, 0x48, 0x0f, 0xb8, 0xc1, 0xf3, 0x0f, 0xb8, 0x03, 0x0f, 0x01, 0xd0, 0x0f, 0xc7, 0xf6]);
  cpu.regs.rcx = 0xf0f0n;
  cpu.regs.rax = 0xffffffff_00000000n;
  handled(assist.handle(cpu), 'popcnt'); // popcnt rax, rcx
  assert.equal(cpu.regs.rax, 8n);
  assert.equal(cpu.regs.rflags & 0x8d5n, 0n);
  cpu.regs.rbx = BigInt(DATA);
  m.setU32(DATA, 0);
  handled(assist.handle(cpu), 'popcnt'); // popcnt eax, [rbx]
  assert.equal(cpu.regs.rax, 0n);
  assert.equal(cpu.regs.rflags & 0x40n, 0x40n);
  cpu.xcr0 = 0x2_0000_0007n;
  cpu.regs.rcx = 1n;
  const xcr1 = assist.handle(cpu);
  assert.ok(!xcr1.handled && /XCR1/.test(xcr1.report));
  cpu.regs.rcx = 0xffffffff_00000000n; // only ECX selects the register
  handled(assist.handle(cpu), 'xgetbv');
  assert.equal(cpu.regs.rax, 7n);
  assert.equal(cpu.regs.rdx, 2n);
  cpu.regs.rsi = 0xffffffff_ffffffffn;
  handled(assist.handle(cpu), 'rdrand'); // rdrand esi
  assert.ok(cpu.regs.rsi <= 0xffffffffn);
  assert.equal(cpu.regs.rflags & 1n, 1n);
  assert.equal(cpu.regs.rip, BigInt(CODE + 15));
});

test('movd xmm15, ecx writes the low dword and clears the rest; movq rax, xmm0 reads it back', () => {
  const { cpu, assist } = setup([0x66, 0x44, 0x0f, 0x6e, 0xf9, 0x66, 0x48, 0x0f, 0x7e, 0xc0]);
  cpu.regs.rcx = 0xdeadbeefcafef00dn;
  cpu.xsave.fill(0xff, 160 + 15 * 16, 160 + 16 * 16);
  handled(assist.handle(cpu), 'movd-to-xmm');
  assert.equal(cpu.view.getUint32(160 + 15 * 16, true), 0xcafef00d);
  assert.equal(cpu.view.getUint32(160 + 15 * 16 + 4, true), 0);
  cpu.view.setBigUint64(160, 0x1122334455667788n, true);
  handled(assist.handle(cpu), 'movd-from-xmm');
  assert.equal(cpu.regs.rax, 0x1122334455667788n);
});

test('32-bit protected mode without paging fetches at CS.base + EIP; real mode at CS.base + IP', () => {
  const { m, cpu, assist } = setup([]);
  cpu.sregs = { ...cpu.sregs, cr0: 0x11n, efer: 0n, cs: seg({ base: 0x10000n, l: 0, db: 1 }), ds: seg({ base: 0x20000n }) };
  m.write(0x10000 + 0x500, Uint8Array.of(0x0f, 0xae, 0x15, 0x40, 0, 0, 0)); // ldmxcsr [0x40]: DS-relative
  m.setU32(0x20040, 0x1f90);
  cpu.regs.rip = 0x500n;
  handled(assist.handle(cpu), 'ldmxcsr');
  assert.equal(cpu.view.getUint32(24, true), 0x1f90);
  assert.equal(cpu.regs.rip, 0x507n);
  cpu.sregs = { ...cpu.sregs, cr0: 0x10n, cs: seg({ base: 0xf0000n, l: 0, db: 0 }) };
  m.setU8(0xffff0, 0x9b);
  cpu.regs.rip = 0xfff0n;
  handled(assist.handle(cpu), 'fwait');
  assert.equal(cpu.regs.rip, 0xfff1n);
  const r = (() => { m.setU8(0xffff1, 0xf4); return assist.handle(cpu); })();
  assert.ok(!r.handled && /\[f4/.test(r.report) && /16-bit/.test(r.report));
});

test('an unknown instruction or an unmapped RIP is reported with the bytes and the mode', () => {
  const a = setup([0x0f, 0xfe, 0xc1]);
  const r = a.assist.handle(a.cpu);
  assert.ok(!r.handled && /0f fe c1/.test(r.report) && /64-bit/.test(r.report) && /rip 0x100000/.test(r.report));
  assert.deepEqual(a.assist.counts(), {});
  const b = setup([0x90]);
  b.cpu.regs.rip = 0x7fff00000000n;
  const u = b.assist.handle(b.cpu);
  assert.ok(!u.handled && /cannot read the instruction/.test(u.report) && /not present/.test(u.report));
});

test('property: arbitrary code bytes, registers and XCR0 never make the assist throw', () => {
  const { m, cpu, assist } = setup([]);
  const interesting = fc.constantFrom(0x0f, 0xae, 0xc7, 0xcc, 0xcd, 0x66, 0xf3, 0xf0, 0x48, 0x65, 0x9b, 0x01, 0xb8, 0x6e, 0x7e);
  fc.assert(fc.property(fc.array(fc.oneof(fc.integer({ min: 0, max: 255 }), interesting), { minLength: 1, maxLength: 15 }),
    fc.array(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), { minLength: 4, maxLength: 4 }), fc.bigInt({ min: 0n, max: 0x602e7n }),
    (code, [rax, rbx, rdx, rsi], xcr0) => {
      m.write(CODE, Uint8Array.from(code));
      Object.assign(cpu.regs, { rip: BigInt(CODE), rax, rbx: rbx! & 0x7fffc0n, rdx, rsi });
      cpu.xcr0 = xcr0 | 1n;
      const r = assist.handle(cpu);
      assert.ok(r.handled || r.report.length > 0);
    }), { numRuns: 5000 });
});
