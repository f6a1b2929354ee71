// Byte layouts of the KVM uapi structs (linux/kvm.h, asm/kvm.h) and their typed encoders/decoders.

/** Offsets and sizes, checked against the kernel headers by test/kvm/structs.test.ts. */
export const LAYOUT = {
  kvm_regs: { size: 144, rax: 0, rbx: 8, rcx: 16, rdx: 24, rsi: 32, rdi: 40, rsp: 48, rbp: 56, r8: 64, r15: 120, rip: 128, rflags: 136 },
  kvm_segment: { size: 24, base: 0, limit: 8, selector: 12, type: 14, present: 15, dpl: 16, db: 17, s: 18, l: 19, g: 20, avl: 21, unusable: 22 },
  kvm_dtable: { size: 16, base: 0, limit: 8 },
  kvm_sregs: { size: 312, cs: 0, ds: 24, es: 48, fs: 72, gs: 96, ss: 120, tr: 144, ldt: 168, gdt: 192, idt: 208, cr0: 224, cr2: 232, cr3: 240, cr4: 248, cr8: 256, efer: 264, apic_base: 272, interrupt_bitmap: 280 },
  kvm_fpu: { size: 416, fpr: 0, fcw: 128, fsw: 130, ftwx: 132, last_opcode: 134, last_ip: 136, last_dp: 144, xmm: 152, mxcsr: 408 },
  kvm_msr_entry: { size: 16, index: 0, data: 8 },
  kvm_msrs: { size: 8, nmsrs: 0, entries: 8 },
  kvm_cpuid_entry2: { size: 40, function: 0, index: 4, flags: 8, eax: 12, ebx: 16, ecx: 20, edx: 24 },
  kvm_cpuid2: { size: 8, nent: 0, entries: 8 },
  kvm_lapic_state: { size: 1024 },
  kvm_xsave: { size: 4096 },
  kvm_xcrs: { size: 392, nr_xcrs: 0, flags: 4, xcrs: 8 },
  kvm_vcpu_events: { size: 64, exception: 0, interrupt: 8, nmi: 12, sipi_vector: 16, flags: 20, smi: 24, exception_has_payload: 55, exception_payload: 56 },
  kvm_mp_state: { size: 4 },
  kvm_debugregs: { size: 128, db: 0, dr6: 32, dr7: 40, flags: 48 },
  kvm_userspace_memory_region: { size: 32, slot: 0, flags: 4, guest_phys_addr: 8, memory_size: 16, userspace_addr: 24 },
  kvm_pit_config: { size: 64, flags: 0 },
  kvm_irq_level: { size: 8, irq: 0, level: 4 },
  kvm_irqfd: { size: 32, fd: 0, gsi: 4, flags: 8, resamplefd: 12 },
  kvm_ioeventfd: { size: 64, datamatch: 0, addr: 8, len: 16, fd: 20, flags: 24 },
  kvm_irq_routing: { size: 8, nr: 0, flags: 4, entries: 8 },
  kvm_irq_routing_entry: { size: 48, gsi: 0, type: 4, flags: 8, u: 16 },
  kvm_dirty_log: { size: 16, slot: 0, dirty_bitmap: 8 },
  kvm_clock_data: { size: 48, clock: 0, flags: 8, realtime: 16, host_tsc: 24 },
  kvm_msi: { size: 32, address_lo: 0, address_hi: 4, data: 8, flags: 12, devid: 16 },
  kvm_run: { exit_reason: 8, immediate_exit: 1, if_flag: 13, cr8: 16, apic_base: 24, exit: 32, kvm_valid_regs: 288, s: 304 },
} as const;

const REG_NAMES = [
  'rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags',
] as const;
export type RegName = (typeof REG_NAMES)[number];
/** struct kvm_regs. */
export type Regs = Record<RegName, bigint>;

export function zeroRegs(): Regs {
  return Object.fromEntries(REG_NAMES.map((n) => [n, 0n])) as Regs;
}

export function encodeRegs(r: Regs, buf = new Uint8Array(144)): Uint8Array {
  const v = view(buf);
  REG_NAMES.forEach((n, i) => v.setBigUint64(i * 8, BigInt.asUintN(64, r[n]), true));
  return buf;
}

export function decodeRegs(buf: Uint8Array): Regs {
  const v = view(buf);
  return Object.fromEntries(REG_NAMES.map((n, i) => [n, v.getBigUint64(i * 8, true)])) as Regs;
}

/** struct kvm_segment. */
export interface Segment {
  base: bigint;
  limit: number;
  selector: number;
  type: number;
  present: number;
  dpl: number;
  db: number;
  s: number;
  l: number;
  g: number;
  avl: number;
  unusable: number;
}

/** struct kvm_dtable. */
export interface DescriptorTable {
  base: bigint;
  limit: number;
}

const SEGMENT_NAMES = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;
const SREGS_CRS = ['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apic_base'] as const;

/** struct kvm_sregs. */
export interface Sregs {
  cs: Segment; ds: Segment; es: Segment; fs: Segment; gs: Segment; ss: Segment; tr: Segment; ldt: Segment;
  gdt: DescriptorTable;
  idt: DescriptorTable;
  cr0: bigint; cr2: bigint; cr3: bigint; cr4: bigint; cr8: bigint; efer: bigint; apic_base: bigint;
  /** Pending external interrupt bitmap (256 bits). */
  interrupt_bitmap: [bigint, bigint, bigint, bigint];
}

function encodeSegment(v: DataView, off: number, s: Segment): void {
  v.setBigUint64(off, BigInt.asUintN(64, s.base), true);
  v.setUint32(off + 8, s.limit >>> 0, true);
  v.setUint16(off + 12, s.selector, true);
  const bytes = [s.type, s.present, s.dpl, s.db, s.s, s.l, s.g, s.avl, s.unusable];
  bytes.forEach((b, i) => v.setUint8(off + 14 + i, b));
  v.setUint8(off + 23, 0);
}

function decodeSegment(v: DataView, off: number): Segment {
  const b = (i: number): number => v.getUint8(off + 14 + i);
  return {
    base: v.getBigUint64(off, true), limit: v.getUint32(off + 8, true), selector: v.getUint16(off + 12, true),
    type: b(0), present: b(1), dpl: b(2), db: b(3), s: b(4), l: b(5), g: b(6), avl: b(7), unusable: b(8),
  };
}

export function encodeSregs(s: Sregs, buf = new Uint8Array(312)): Uint8Array {
  const v = view(buf);
  SEGMENT_NAMES.forEach((n, i) => encodeSegment(v, i * 24, s[n]));
  for (const [i, t] of [s.gdt, s.idt].entries()) {
    v.setBigUint64(192 + i * 16, t.base, true);
    v.setUint16(200 + i * 16, t.limit, true);
    for (let p = 202; p < 208; p++) v.setUint8(p + i * 16, 0);
  }
  SREGS_CRS.forEach((n, i) => v.setBigUint64(224 + i * 8, s[n], true));
  s.interrupt_bitmap.forEach((w, i) => v.setBigUint64(280 + i * 8, w, true));
  return buf;
}

export function decodeSregs(buf: Uint8Array): Sregs {
  const v = view(buf);
  const seg = Object.fromEntries(SEGMENT_NAMES.map((n, i) => [n, decodeSegment(v, i * 24)])) as Record<
    (typeof SEGMENT_NAMES)[number], Segment>;
  const crs = Object.fromEntries(SREGS_CRS.map((n, i) => [n, v.getBigUint64(224 + i * 8, true)])) as Record<
    (typeof SREGS_CRS)[number], bigint>;
  const dt = (i: number): DescriptorTable => ({ base: v.getBigUint64(192 + i * 16, true), limit: v.getUint16(200 + i * 16, true) });
  const ib = [0, 1, 2, 3].map((i) => v.getBigUint64(280 + i * 8, true)) as Sregs['interrupt_bitmap'];
  return { ...seg, gdt: dt(0), idt: dt(1), ...crs, interrupt_bitmap: ib };
}

/** struct kvm_fpu, kept as its raw bytes with typed accessors for what the VMM edits. */
export class Fpu {
  constructor(readonly bytes: Uint8Array = new Uint8Array(416)) {}
  private get v(): DataView { return view(this.bytes); }
  get fcw(): number { return this.v.getUint16(128, true); }
  set fcw(x: number) { this.v.setUint16(128, x, true); }
  get mxcsr(): number { return this.v.getUint32(408, true); }
  set mxcsr(x: number) { this.v.setUint32(408, x >>> 0, true); }
}

/** One MSR: index and value. */
export interface MsrEntry {
  index: number;
  data: bigint;
}

export function encodeMsrs(entries: readonly MsrEntry[]): Uint8Array {
  const buf = new Uint8Array(8 + 16 * entries.length);
  const v = view(buf);
  v.setUint32(0, entries.length, true);
  entries.forEach((e, i) => {
    v.setUint32(8 + i * 16, e.index, true);
    v.setBigUint64(16 + i * 16, BigInt.asUintN(64, e.data), true);
  });
  return buf;
}

export function decodeMsrs(buf: Uint8Array, count: number): MsrEntry[] {
  const v = view(buf);
  return Array.from({ length: count }, (_, i) => ({
    index: v.getUint32(8 + i * 16, true), data: v.getBigUint64(16 + i * 16, true),
  }));
}

/** struct kvm_cpuid_entry2. */
export interface CpuidEntry {
  function: number;
  index: number;
  flags: number;
  eax: number;
  ebx: number;
  ecx: number;
  edx: number;
}

export function encodeCpuid(entries: readonly CpuidEntry[], capacity = entries.length): Uint8Array {
  const buf = new Uint8Array(8 + 40 * capacity);
  const v = view(buf);
  v.setUint32(0, entries.length, true);
  entries.forEach((e, i) => {
    const o = 8 + i * 40;
    [e.function, e.index, e.flags, e.eax, e.ebx, e.ecx, e.edx].forEach((x, j) => v.setUint32(o + j * 4, x >>> 0, true));
  });
  return buf;
}

export function decodeCpuid(buf: Uint8Array): CpuidEntry[] {
  const v = view(buf);
  const n = v.getUint32(0, true);
  return Array.from({ length: n }, (_, i) => {
    const o = 8 + i * 40;
    const u = (j: number): number => v.getUint32(o + j * 4, true);
    return { function: u(0), index: u(1), flags: u(2), eax: u(3), ebx: u(4), ecx: u(5), edx: u(6) };
  });
}

/** struct kvm_vcpu_events (the fields Typevisor reads or sets; the rest round-trips in `raw`). */
export interface VcpuEvents {
  exception: { injected: number; nr: number; hasErrorCode: number; pending: number; errorCode: number };
  interrupt: { injected: number; nr: number; soft: number; shadow: number };
  nmi: { injected: number; pending: number; masked: number };
  sipiVector: number;
  flags: number;
  raw: Uint8Array;
}

export function decodeVcpuEvents(buf: Uint8Array): VcpuEvents {
  const v = view(buf);
  const b = (o: number): number => v.getUint8(o);
  return {
    exception: { injected: b(0), nr: b(1), hasErrorCode: b(2), pending: b(3), errorCode: v.getUint32(4, true) },
    interrupt: { injected: b(8), nr: b(9), soft: b(10), shadow: b(11) },
    nmi: { injected: b(12), pending: b(13), masked: b(14) },
    sipiVector: v.getUint32(16, true),
    flags: v.getUint32(20, true),
    raw: buf.slice(),
  };
}

export function encodeVcpuEvents(e: VcpuEvents): Uint8Array {
  const buf = e.raw.slice();
  const v = view(buf);
  const x = e.exception;
  [x.injected, x.nr, x.hasErrorCode, x.pending].forEach((b, i) => v.setUint8(i, b));
  v.setUint32(4, x.errorCode >>> 0, true);
  const n = e.interrupt;
  [n.injected, n.nr, n.soft, n.shadow].forEach((b, i) => v.setUint8(8 + i, b));
  [e.nmi.injected, e.nmi.pending, e.nmi.masked].forEach((b, i) => v.setUint8(12 + i, b));
  v.setUint32(16, e.sipiVector, true);
  v.setUint32(20, e.flags, true);
  return buf;
}

/** KVM_VCPUEVENT_VALID_* flags. */
export const VCPU_EVENT_VALID = { NMI_PENDING: 1, SIPI_VECTOR: 2, SHADOW: 4, SMM: 8, PAYLOAD: 16 } as const;

export function encodeMemoryRegion(slot: number, flags: number, gpa: number, size: number, hostAddr: number): Uint8Array {
  const buf = new Uint8Array(32);
  const v = view(buf);
  v.setUint32(0, slot, true);
  v.setUint32(4, flags, true);
  v.setBigUint64(8, BigInt(gpa), true);
  v.setBigUint64(16, BigInt(size), true);
  v.setBigUint64(24, BigInt(hostAddr), true);
  return buf;
}

/** struct kvm_xcrs as a list of (xcr, value). */
export function encodeXcrs(xcrs: readonly { xcr: number; value: bigint }[]): Uint8Array {
  const buf = new Uint8Array(392);
  const v = view(buf);
  v.setUint32(0, xcrs.length, true);
  xcrs.forEach((x, i) => {
    v.setUint32(8 + i * 16, x.xcr, true);
    v.setBigUint64(16 + i * 16, x.value, true);
  });
  return buf;
}

export function decodeXcrs(buf: Uint8Array): { xcr: number; value: bigint }[] {
  const v = view(buf);
  return Array.from({ length: Math.min(16, v.getUint32(0, true)) }, (_, i) => ({
    xcr: v.getUint32(8 + i * 16, true), value: v.getBigUint64(16 + i * 16, true),
  }));
}

export function view(buf: Uint8Array): DataView {
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}
