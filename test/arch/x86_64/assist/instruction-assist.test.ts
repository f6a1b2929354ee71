// Unit tests of the instruction assist over a fake vCPU: what each completed instruction does to the state.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GuestMemory } from '../../../../src/memory/guest-memory.js';
import { InstructionAssist, type AssistVcpu } from '../../../../src/arch/x86_64/assist/instruction-assist.js';
import { zeroRegs, type Regs, type Sregs, type Segment } from '../../../../src/kvm/structs.js';
import { writeIdentityPageTables } from '../../../../src/arch/x86_64/page-tables.js';
import { LAYOUT } from '../../../../src/arch/x86_64/layout.js';

const seg = (over: Partial<Segment> = {}): Segment =>
  ({ base: 0n, limit: 0xffffffff, selector: 0x10, type: 11, present: 1, dpl: 0, db: 0, s: 1, l: 1, g: 1, avl: 0, unusable: 0, ...over });

class FakeVcpu implements AssistVcpu {
  regs: Regs = zeroRegs();
  xsave = new Uint8Array(4096);
  injected: { vector: number; errorCode?: number | undefined }[] = [];
  sregs: Sregs = {
    cs: seg(), ds: seg(), es: seg(), fs: seg(), gs: seg({ base: 0x300000n }), ss: seg(), tr: seg(), ldt: seg(),
    gdt: { base: 0n, limit: 0 }, idt: { base: 0n, limit: 0 },
    cr0: 0x80000011n, cr2: 0n, cr3: BigInt(LAYOUT.PML4), cr4: 0x20n, cr8: 0n, efer: 0x500n, apic_base: 0n,
    interrupt_bitmap: [0n, 0n, 0n, 0n],
  };
  constructor() { new DataView(this.xsave.buffer).setUint32(24, 0x1f80, true); }
  getRegs(): Regs { return { ...this.regs }; }
  setRegs(r: Regs): void { this.regs = { ...r }; }
  getSregs(): Sregs { return this.sregs; }
  getXsave(): Uint8Array { return this.xsave.slice(); }
  setXsave(a: Uint8Array): void { this.xsave = a.slice(); }
  getXcr0(): bigint { return 3n; }
  injectException(vector: number, errorCode?: number): void { this.injected.push({ vector, errorCode }); }
}

function setup(code: number[]): { m: GuestMemory; cpu: FakeVcpu; assist: InstructionAssist } {
  const m = GuestMemory.anonymous(8 << 20);
  writeIdentityPageTables(m);
  m.write(0x100000, Uint8Array.from(code));
  const cpu = new FakeVcpu();
  cpu.regs.rip = 0x100000n;
  return { m, cpu, assist: new InstructionAssist(m) };
}

test('int3 is a trap: RIP moves past it and #BP is injected', () => {
  const { cpu, assist } = setup([0xcc]);
  assert.deepEqual(assist.handle(cpu), { handled: true, kind: 'int3' });
  assert.equal(cpu.regs.rip, 0x100001n);
  assert.deepEqual(cpu.injected, [{ vector: 3, errorCode: undefined }]);
  assert.deepEqual(assist.counts(), { int3: 1 });
});

test('ud2 is a fault: RIP stays and #UD is injected; fwait is stepped over', () => {
  const a = setup([0x0f, 0x0b]);
  assert.equal(a.assist.handle(a.cpu).handled, true);
  assert.equal(a.cpu.regs.rip, 0x100000n);
  assert.equal(a.cpu.injected[0]!.vector, 6);
  const b = setup([0x9b]);
  assert.equal(b.assist.handle(b.cpu).handled, true);
  assert.equal(b.cpu.regs.rip, 0x100001n);
  assert.deepEqual(b.cpu.injected, []);
});

test('ldmxcsr reads through the page tables with a GS base; reserved bits raise #GP(0)', () => {
  const { m, cpu, assist } = setup([0x65, 0x0f, 0xae, 0x14, 0x25, 0x10, 0, 0, 0]); // ldmxcsr gs:[0x10]
  m.setU32(0x300010, 0x9f80);
  assert.equal(assist.handle(cpu).handled, true);
  assert.equal(new DataView(cpu.xsave.buffer).getUint32(24, true), 0x9f80);
  assert.equal(cpu.regs.rip, 0x100009n);
  m.setU32(0x300010, 0x10000);
  cpu.regs.rip = 0x100000n;
  assist.handle(cpu);
  assert.deepEqual(cpu.injected.at(-1), { vector: 13, errorCode: 0 });
  assert.equal(cpu.regs.rip, 0x100000n);
});

test('xsave then xrstor round-trips x87/SSE state through guest memory, with XSTATE_BV', () => {
  // xsave [rbx]; then xrstor [rbx]  (rbx = 0x200000, EDX:EAX = 3)
  const { m, cpu, assist } = setup([0x0f, 0xae, 0x23, 0x0f, 0xae, 0x2b]);
  cpu.regs.rbx = 0x200000n;
  cpu.regs.rax = 3n;
  cpu.xsave.fill(0x11, 160, 160 + 256); // XMM registers
  new DataView(cpu.xsave.buffer).setBigUint64(512, 3n, true);
  assert.equal(assist.handle(cpu).handled, true);
  assert.equal(m.getU8(0x200000 + 160), 0x11);
  assert.equal(m.getU64(0x200000 + 512), 3n);
  assert.equal(m.getU32(0x200000 + 24), 0x1f80);
  // Change the image, restore it, and see the vCPU state follow.
  m.fill(0x200000 + 160, 16, 0x22);
  m.setU32(0x200000 + 24, 0x1fa0);
  cpu.xsave.fill(0, 160, 416);
  assert.equal(assist.handle(cpu).handled, true);
  assert.equal(cpu.xsave[160], 0x22);
  assert.equal(cpu.xsave[176], 0x11);
  assert.equal(new DataView(cpu.xsave.buffer).getUint32(24, true), 0x1fa0);
  // A component whose XSTATE_BV bit is clear in memory is restored to its initial state.
  cpu.regs.rip = 0x100003n;
  m.setU64(0x200000 + 512, 1n);
  assert.equal(assist.handle(cpu).handled, true);
  assert.equal(cpu.xsave[160], 0);
  assert.equal(new DataView(cpu.xsave.buffer).getBigUint64(512, true) & 2n, 0n);
});

test('misaligned XSAVE areas raise #GP; compacted images are refused with a report', () => {
  const a = setup([0x0f, 0xae, 0x2b]);
  a.cpu.regs.rbx = 0x200010n;
  a.cpu.regs.rax = 3n;
  assert.equal(a.assist.handle(a.cpu).handled, true);
  assert.deepEqual(a.cpu.injected, [{ vector: 13, errorCode: 0 }]);
  const b = setup([0x0f, 0xae, 0x2b]);
  b.cpu.regs.rbx = 0x200000n;
  b.cpu.regs.rax = 3n;
  b.m.setU64(0x200000 + 520, 1n << 63n);
  const r = b.assist.handle(b.cpu);
  assert.equal(r.handled, false);
  assert.ok(!r.handled && /compacted/.test(r.report));
});

test('movd xmm15, ecx writes the low dword and clears the rest of the register', () => {
  const { cpu, assist } = setup([0x66, 0x44, 0x0f, 0x6e, 0xf9]);
  cpu.regs.rcx = 0xdeadbeefcafef00dn;
  cpu.xsave.fill(0xff, 160 + 15 * 16, 160 + 16 * 16);
  assert.equal(assist.handle(cpu).handled, true);
  const v = new DataView(cpu.xsave.buffer);
  assert.equal(v.getUint32(160 + 15 * 16, true), 0xcafef00d);
  assert.equal(v.getUint32(160 + 15 * 16 + 4, true), 0);
});

test('an unknown instruction or an unmapped RIP is reported with the bytes and the mode', () => {
  const a = setup([0x0f, 0xfe, 0xc1]);
  const r = a.assist.handle(a.cpu);
  assert.ok(!r.handled && /0f fe c1/.test(r.report) && /64-bit/.test(r.report));
  const b = setup([0x90]);
  b.cpu.regs.rip = 0x7fff00000000n;
  const u = b.assist.handle(b.cpu);
  assert.ok(!u.handled && /not mapped/.test(u.report));
});
