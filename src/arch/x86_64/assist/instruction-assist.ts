// The assist: completes instructions KVM's emulator cannot (nested PVM KVM; Intel SDM vol. 1 ch. 13, vol. 2).
import type { GuestMemory } from '../../../memory/guest-memory.js';
import type { Regs, Sregs } from '../../../kvm/structs.js';
import {
  decode, effectiveAddress, MAX_INSTRUCTION_LENGTH, type CpuMode, type DecodedInstruction, type MemOperand,
} from './decoder.js';
import { readLinearChecked, writeLinear, type Access, type PagingState } from './page-walk.js';

/** What the assist needs from one vCPU (implemented over the KVM vCPU fd by the VMM). */
export interface AssistVcpu {
  getRegs(): Regs;
  setRegs(r: Regs): void;
  getSregs(): Sregs;
  /**
   * KVM_GET/SET_XSAVE: the standard (non-compacted) XSAVE layout, at least 4096 bytes. MXCSR is
   * read and written here too, not through KVM_GET/SET_FPU: on our PVM hosts KVM_GET_FPU reports
   * MXCSR as 0 and KVM_SET_FPU ignores it (checked with a C probe, 2026-11-24), and KVM_SET_XSAVE
   * applies MXCSR only when XSTATE_BV has bit 0, 1 or 2 set.
   */
  getXsave(): Uint8Array;
  setXsave(area: Uint8Array): void;
  getXcr0(): bigint;
  /** Injects an exception through KVM_SET_VCPU_EVENTS (the guest's IDT delivers it). */
  injectException(vector: number, errorCode?: number): void;
}

export type AssistOutcome = { handled: true; kind: string } | { handled: false; report: string };

/** Offset and size of an XSAVE state component in the standard layout (CPUID leaf 0xD, subleaf = component). */
export interface XsaveComponent {
  component: number;
  offset: number;
  size: number;
}

/**
 * Standard-format offsets of the components above SSE (Intel SDM vol. 1 13.4, 13.5; fixed on
 * every CPU that has them): AVX, MPX, AVX-512 opmask / ZMM_Hi256 / Hi16_ZMM, PKRU. Entries the
 * VMM passes from CPUID leaf 0xD override these.
 */
export const STANDARD_XSAVE_LAYOUT: readonly XsaveComponent[] = [
  { component: 2, offset: 576, size: 256 },
  { component: 3, offset: 960, size: 64 },
  { component: 4, offset: 1024, size: 64 },
  { component: 5, offset: 1088, size: 64 },
  { component: 6, offset: 1152, size: 512 },
  { component: 7, offset: 1664, size: 1024 },
  { component: 9, offset: 2688, size: 8 },
];

/** What completing an instruction does to RIP, and the exception to deliver; a string is why it could not. */
type Step = { rip: 'next' | 'same'; exception?: { vector: number; errorCode?: number } } | string;
type Read = (addr: bigint, n: number, forWrite?: boolean) => Uint8Array | string;
type Write = (addr: bigint, data: Uint8Array) => true | string;

const VECTOR_BP = 3;
const VECTOR_OF = 4;
const VECTOR_UD = 6;
const VECTOR_GP = 13;
const NEXT: Step = { rip: 'next' };
const GP0: Step = { rip: 'same', exception: { vector: VECTOR_GP, errorCode: 0 } };
const UD: Step = { rip: 'same', exception: { vector: VECTOR_UD } };

const LEGACY_SIZE = 512;
const HEADER = 512;
const HEADER_SIZE = 64;
const MXCSR_OFFSET = 24;
const XMM_OFFSET = 160;
const XMM_END = 416;
const X87_INIT_FCW = 0x037f;
/** MXCSR_MASK 0xFFFF (DAZ supported, as on every x86-64 CPU): the upper 16 bits are reserved. */
const MXCSR_RESERVED = 0xffff0000;
const FLAGS_CF = 1n;
const FLAGS_ZF = 0x40n;
const FLAGS_ARITH = 0x8d5n; // CF PF AF ZF SF OF
const RFLAGS_VM = 1n << 17n;
const GPR_ORDER = ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'] as const;
/** Instructions that accept a LOCK prefix; on any other, LOCK raises #UD. */
const LOCKABLE = new Set(['cmpxchg8b', 'cmpxchg16b']);

/** The x87 part of the legacy region (FCW … FDP, ST0–ST7), around MXCSR and MXCSR_MASK at 24..31. */
const X87_RANGES = [{ offset: 0, size: 24 }, { offset: 32, size: 128 }];

/** Little-endian unsigned value of `n` bytes at `from`. */
function le(bytes: Uint8Array, from: number, n: number): bigint {
  let v = 0n;
  for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[from + i] ?? 0);
  return v;
}

function toLe(value: bigint, n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = Number((value >> BigInt(8 * i)) & 0xffn);
  return out;
}

const dataView = (a: Uint8Array): DataView => new DataView(a.buffer, a.byteOffset, a.byteLength);

/**
 * KVM_SET_XSAVE takes MXCSR only when XSTATE_BV has x87, SSE or AVX set; SSE's XMM bytes in a
 * buffer from KVM_GET_XSAVE hold the real (initial) values even when its bit is clear, so
 * setting bit 1 is always truthful.
 */
function keepMxcsr(xstateBv: bigint): bigint {
  return xstateBv & 7n ? xstateBv : xstateBv | 2n;
}

export class InstructionAssist {
  private readonly counters: Record<string, number> = {};
  private readonly components: Map<number, XsaveComponent>;

  /**
   * @param xsaveLayout component offsets/sizes from CPUID leaf 0xD; they override
   *   STANDARD_XSAVE_LAYOUT per component. A component the guest asks for that is in neither
   *   is not guessed: the instruction is reported as unsupported.
   */
  constructor(private readonly memory: GuestMemory, xsaveLayout: readonly XsaveComponent[] = []) {
    this.components = new Map();
    for (const c of [...STANDARD_XSAVE_LAYOUT, ...xsaveLayout]) {
      if (c.component >= 2 && c.component < 63 && c.offset >= HEADER + HEADER_SIZE && c.size > 0) this.components.set(c.component, c);
    }
  }

  /** Instructions completed so far, by kind. */
  counts(): Record<string, number> {
    return { ...this.counters };
  }

  /** Handles one KVM_EXIT_INTERNAL_ERROR (emulation failure) of `vcpu`. */
  handle(vcpu: AssistVcpu): AssistOutcome {
    const regs = vcpu.getRegs();
    const sregs = vcpu.getSregs();
    const mode = cpuMode(sregs, regs.rflags);
    const cpl = (sregs.cr0 & 1n) === 0n ? 0 : regs.rflags & RFLAGS_VM ? 3 : sregs.cs.dpl;
    const paging: PagingState = { cr0: sregs.cr0, cr3: sregs.cr3, cr4: sregs.cr4, efer: sregs.efer };
    const access: Access = { user: cpl === 3 };
    // In 64-bit mode CS.base is ignored; elsewhere the linear address is CS.base + (E)IP.
    const linear = mode === 64 ? regs.rip : BigInt.asUintN(32, sregs.cs.base + BigInt.asUintN(mode, regs.rip));
    const where = `rip 0x${regs.rip.toString(16)} (${mode}-bit, cpl ${cpl})`;
    const fetched = this.fetch(linear, paging, access);
    if (typeof fetched === 'string') return { handled: false, report: `cannot read the instruction at ${where}: ${fetched}` };
    const d = decode(fetched, mode);
    const hex = Array.from(fetched.subarray(0, d.kind === 'unknown' ? fetched.length : d.length),
      (b) => b.toString(16).padStart(2, '0')).join(' ');
    if (d.kind === 'unknown') return { handled: false, report: `unsupported instruction [${hex}] at ${where}: ${d.reason}` };
    const step = d.lock && !LOCKABLE.has(d.kind) ? UD : this.complete(vcpu, d, regs, sregs, paging, access, mode);
    if (typeof step === 'string') return { handled: false, report: `${d.kind} [${hex}] at ${where}: ${step}` };
    if (step.rip === 'next') {
      regs.rip = BigInt.asUintN(mode, regs.rip + BigInt(d.length));
      vcpu.setRegs(regs);
    }
    // After SET_REGS: a trap's exception frame must carry the RIP after the instruction.
    if (step.exception) vcpu.injectException(step.exception.vector, step.exception.errorCode);
    this.counters[d.kind] = (this.counters[d.kind] ?? 0) + 1;
    return { handled: true, kind: d.kind };
  }

  /** Up to 15 bytes at `linear`; fewer when the instruction could end before an unmapped page. */
  private fetch(linear: bigint, paging: PagingState, access: Access): Uint8Array | string {
    const whole = readLinearChecked(this.memory, linear, MAX_INSTRUCTION_LENGTH, paging, access);
    if (whole instanceof Uint8Array) return whole;
    const inPage = 4096 - Number(linear & 0xfffn);
    if (inPage >= MAX_INSTRUCTION_LENGTH) return whole.fault;
    const part = readLinearChecked(this.memory, linear, inPage, paging, access);
    return part instanceof Uint8Array ? part : part.fault;
  }

  /** Performs the instruction on `regs` (written back only when RIP moves) and the vCPU's other state. */
  private complete(vcpu: AssistVcpu, d: DecodedInstruction, regs: Regs, sregs: Sregs, paging: PagingState,
    access: Access, mode: CpuMode): Step {
    const next = BigInt.asUintN(mode, regs.rip + BigInt(d.length));
    const gpr = GPR_ORDER.map((n) => regs[n]);
    const address = (mem: MemOperand): bigint => {
      const ea = effectiveAddress(mem, gpr, next);
      // In 64-bit mode only FS and GS have a base (SDM vol. 3A 3.4.4).
      if (mode === 64) return BigInt.asUintN(64, (mem.segment === 'fs' || mem.segment === 'gs' ? sregs[mem.segment].base : 0n) + ea);
      return BigInt.asUintN(32, sregs[mem.segment].base + ea);
    };
    const read: Read = (addr, n, forWrite = false) => {
      const r = readLinearChecked(this.memory, addr, n, paging, { ...access, write: forWrite });
      return r instanceof Uint8Array ? r : `memory operand: ${r.fault}`;
    };
    const write: Write = (addr, data) => {
      const r = writeLinear(this.memory, addr, data, paging, access);
      return r === true ? r : `memory operand: ${r.fault}`;
    };
    const reg = (n: number | undefined): (typeof GPR_ORDER)[number] => GPR_ORDER[n ?? 0]!;

    switch (d.kind) {
      case 'int3':
        // A trap: the guest's #BP handler sees RIP after the int3 (Linux's text_poke_bp relies on it).
        return { rip: 'next', exception: { vector: VECTOR_BP } };
      case 'int':
        // KVM_SET_VCPU_EVENTS injects exceptions, not software interrupts; #BP and #OF are both.
        if (d.imm !== VECTOR_BP && d.imm !== VECTOR_OF) return `software interrupt ${d.imm} cannot be injected as an exception`;
        return { rip: 'next', exception: { vector: d.imm } };
      case 'ud2':
        // A fault: RIP stays on the ud2 (Linux's BUG/WARN handler looks for it there).
        return UD;
      case 'fwait':
      case 'lfence':
      case 'mfence':
      case 'sfence':
        // No unmasked x87 exceptions are ever pending in our guests, and the vCPU is stopped here.
        return NEXT;
      case 'clflush':
      case 'clflushopt':
      case 'clwb': {
        // Guest RAM is ordinary coherent host memory; only the fault on an unmapped line is kept.
        const r = read(address(d.mem!), 1);
        return typeof r === 'string' ? r : NEXT;
      }
      case 'ldmxcsr': {
        const b = read(address(d.mem!), 4);
        if (typeof b === 'string') return b;
        const value = dataView(b).getUint32(0, true);
        if (value & MXCSR_RESERVED) return GP0;
        const area = vcpu.getXsave();
        const av = dataView(area);
        av.setUint32(MXCSR_OFFSET, value, true);
        av.setBigUint64(HEADER, keepMxcsr(av.getBigUint64(HEADER, true)), true);
        vcpu.setXsave(area);
        return NEXT;
      }
      case 'stmxcsr': {
        const area = vcpu.getXsave();
        const r = write(address(d.mem!), area.slice(MXCSR_OFFSET, MXCSR_OFFSET + 4));
        return r === true ? NEXT : r;
      }
      case 'fxsave':
        return this.fxsave(vcpu, address(d.mem!), read, write);
      case 'fxrstor':
        return this.fxrstor(vcpu, address(d.mem!), read);
      case 'xsave':
      case 'xsaveopt':
        return this.xsave(vcpu, address(d.mem!), this.rfbm(vcpu, regs), read, write);
      case 'xrstor':
        return this.xrstor(vcpu, address(d.mem!), this.rfbm(vcpu, regs), vcpu.getXcr0(), read);
      case 'xgetbv': {
        // XCR1 (XINUSE) depends on CPUID the assist does not see; only XCR0 is answered.
        if ((regs.rcx & 0xffffffffn) !== 0n) return `XGETBV of XCR${regs.rcx & 0xffffffffn}`;
        const xcr0 = vcpu.getXcr0();
        regs.rax = xcr0 & 0xffffffffn;
        regs.rdx = xcr0 >> 32n;
        return NEXT;
      }
      case 'rdrand':
      case 'rdseed': {
        const bits = d.rexW ? 64 : d.operandSize16 ? 16 : 32;
        const rnd = new BigUint64Array(1);
        crypto.getRandomValues(rnd);
        const name = reg(d.rmReg);
        // A 16-bit destination keeps the upper bits; a 32-bit one zero-extends (SDM vol. 1 3.4.1.1).
        regs[name] = bits === 16 ? (regs[name] & ~0xffffn) | (rnd[0]! & 0xffffn) : BigInt.asUintN(bits, rnd[0]!);
        regs.rflags = (regs.rflags & ~FLAGS_ARITH) | FLAGS_CF;
        return NEXT;
      }
      case 'popcnt': {
        const bits = d.rexW ? 64 : d.operandSize16 ? 16 : 32;
        let src: bigint;
        if (d.mem) {
          const b = read(address(d.mem), bits / 8);
          if (typeof b === 'string') return b;
          src = le(b, 0, bits / 8);
        } else {
          src = BigInt.asUintN(bits, regs[reg(d.rmReg)]);
        }
        let count = 0n;
        for (let v = src; v; v >>= 1n) count += v & 1n;
        const name = reg(d.reg);
        regs[name] = bits === 16 ? (regs[name] & ~0xffffn) | count : count;
        regs.rflags = (regs.rflags & ~FLAGS_ARITH) | (src === 0n ? FLAGS_ZF : 0n);
        return NEXT;
      }
      case 'cmpxchg8b':
      case 'cmpxchg16b':
        return this.cmpxchg(d.kind === 'cmpxchg16b' ? 16 : 8, address(d.mem!), regs, read, write);
      case 'movd-to-xmm':
      case 'movd-from-xmm':
        return this.movd(vcpu, d, regs, d.mem ? address(d.mem) : undefined, read, write);
      case 'xsetbv':
        return 'XSETBV needs KVM_SET_XCRS, which the assist does not have';
    }
  }

  /** Requested-feature bitmap of XSAVE/XRSTOR: EDX:EAX ∧ XCR0. */
  private rfbm(vcpu: AssistVcpu, regs: Regs): bigint {
    return vcpu.getXcr0() & (((regs.rdx & 0xffffffffn) << 32n) | (regs.rax & 0xffffffffn));
  }

  /**
   * Byte ranges of the components in `rfbm`, in the standard layout (x87 and SSE share the
   * legacy region; MXCSR is handled apart), or why one cannot be placed.
   */
  private ranges(rfbm: bigint, areaSize: number): { component: number; offset: number; size: number }[] | string {
    const out: { component: number; offset: number; size: number }[] = [];
    if (rfbm & 1n) for (const r of X87_RANGES) out.push({ component: 0, ...r });
    if (rfbm & 2n) out.push({ component: 1, offset: XMM_OFFSET, size: XMM_END - XMM_OFFSET });
    for (let i = 2; i < 63; i++) {
      if (!(rfbm & (1n << BigInt(i)))) continue;
      const c = this.components.get(i);
      if (!c) return `XSAVE component ${i} has no known offset`;
      if (c.offset + c.size > areaSize) return `XSAVE component ${i} lies beyond KVM's ${areaSize}-byte XSAVE buffer`;
      out.push(c);
    }
    return out;
  }

  private fxsave(vcpu: AssistVcpu, addr: bigint, read: Read, write: Write): Step {
    if (addr % 16n) return GP0;
    // Bytes 416..511 are left to software: keep what the guest has there.
    const image = read(addr, LEGACY_SIZE, true);
    if (typeof image === 'string') return image;
    image.set(vcpu.getXsave().subarray(0, XMM_END));
    const r = write(addr, image);
    return r === true ? NEXT : r;
  }

  private fxrstor(vcpu: AssistVcpu, addr: bigint, read: Read): Step {
    if (addr % 16n) return GP0;
    const image = read(addr, LEGACY_SIZE);
    if (typeof image === 'string') return image;
    if (dataView(image).getUint32(MXCSR_OFFSET, true) & MXCSR_RESERVED) return GP0;
    const area = vcpu.getXsave();
    const av = dataView(area);
    // MXCSR_MASK (28..31) describes the CPU, it is not restored.
    area.set(image.subarray(0, MXCSR_OFFSET + 4));
    area.set(image.subarray(32, XMM_END), 32);
    av.setBigUint64(HEADER, av.getBigUint64(HEADER, true) | 3n, true);
    vcpu.setXsave(area);
    return NEXT;
  }

  /** XSAVE / XSAVEOPT, standard form (XSAVEOPT may skip unmodified state; writing it all is allowed). */
  private xsave(vcpu: AssistVcpu, addr: bigint, rfbm: bigint, read: Read, write: Write): Step {
    if (addr % 64n) return GP0;
    const area = vcpu.getXsave();
    const ranges = this.ranges(rfbm, area.length);
    if (typeof ranges === 'string') return ranges;
    const span = Math.max(HEADER + HEADER_SIZE, ...ranges.map((r) => r.offset + r.size));
    // Read first: bytes of components outside RFBM and the rest of the header stay as they are.
    const image = read(addr, span, true);
    if (typeof image === 'string') return image;
    for (const r of ranges) image.set(area.subarray(r.offset, r.offset + r.size), r.offset);
    if (rfbm & 6n) image.set(area.subarray(MXCSR_OFFSET, MXCSR_OFFSET + 8), MXCSR_OFFSET);
    const iv = dataView(image);
    // XSTATE_BV[i] = XINUSE[i] for i in RFBM, untouched elsewhere; XCOMP_BV is not written (SDM 13.7).
    const inUse = dataView(area).getBigUint64(HEADER, true);
    iv.setBigUint64(HEADER, (iv.getBigUint64(HEADER, true) & ~rfbm) | (inUse & rfbm), true);
    const r = write(addr, image);
    return r === true ? NEXT : r;
  }

  /** XRSTOR, standard form (SDM vol. 1 13.8); the compacted form is reported, not guessed at. */
  private xrstor(vcpu: AssistVcpu, addr: bigint, rfbm: bigint, xcr0: bigint, read: Read): Step {
    if (addr % 64n) return GP0;
    const header = read(addr + BigInt(HEADER), HEADER_SIZE);
    if (typeof header === 'string') return header;
    const hv = dataView(header);
    const xstateBv = hv.getBigUint64(0, true);
    const xcompBv = hv.getBigUint64(8, true);
    if (xcompBv >> 63n) return 'compacted XSAVE format is not supported';
    if (xstateBv & ~xcr0 || xcompBv !== 0n || hv.getBigUint64(16, true) !== 0n) return GP0;
    const area = vcpu.getXsave();
    const ranges = this.ranges(rfbm, area.length);
    if (typeof ranges === 'string') return ranges;
    const span = Math.max(HEADER + HEADER_SIZE, ...ranges.map((r) => r.offset + r.size));
    const image = read(addr, span);
    if (typeof image === 'string') return image;
    const mxcsr = dataView(image).getUint32(MXCSR_OFFSET, true);
    // MXCSR is loaded whenever SSE or AVX is requested, whatever XSTATE_BV says.
    if (rfbm & 6n && mxcsr & MXCSR_RESERVED) return GP0;
    const av = dataView(area);
    for (const r of ranges) {
      if (xstateBv & (1n << BigInt(r.component))) area.set(image.subarray(r.offset, r.offset + r.size), r.offset);
      else area.fill(0, r.offset, r.offset + r.size); // the initial state of every component is zeros…
    }
    if (rfbm & 1n && !(xstateBv & 1n)) av.setUint16(0, X87_INIT_FCW, true); // …except the x87 control word
    let bv = (av.getBigUint64(HEADER, true) & ~rfbm) | (xstateBv & rfbm);
    if (rfbm & 6n) {
      av.setUint32(MXCSR_OFFSET, mxcsr, true);
      bv = keepMxcsr(bv);
    }
    av.setBigUint64(HEADER, bv, true);
    vcpu.setXsave(area);
    return NEXT;
  }

  /**
   * CMPXCHG8B/16B. Atomic with respect to this vCPU only (it is stopped); other vCPUs of an SMP
   * guest could race, so the VMM keeps `clearcpuid=cx16` on the command line there.
   */
  private cmpxchg(size: 8 | 16, addr: bigint, regs: Regs, read: Read, write: Write): Step {
    if (size === 16 && addr % 16n) return GP0;
    const half = size / 2;
    const mask = (1n << BigInt(8 * half)) - 1n;
    // The locked cycle always writes, so a read-only page faults even when the compare fails.
    const cur = read(addr, size, true);
    if (typeof cur === 'string') return cur;
    const lo = le(cur, 0, half);
    const hi = le(cur, half, half);
    if (lo === (regs.rax & mask) && hi === (regs.rdx & mask)) {
      const desired = new Uint8Array(size);
      desired.set(toLe(regs.rbx & mask, half));
      desired.set(toLe(regs.rcx & mask, half), half);
      const r = write(addr, desired);
      if (r !== true) return r;
      regs.rflags |= FLAGS_ZF;
    } else {
      regs.rax = lo;
      regs.rdx = hi;
      regs.rflags &= ~FLAGS_ZF;
    }
    return NEXT;
  }

  /** MOVD/MOVQ between an XMM register and a GPR or memory (SSE in kernel-FPU sections). */
  private movd(vcpu: AssistVcpu, d: DecodedInstruction, regs: Regs, memAddr: bigint | undefined, read: Read, write: Write): Step {
    const bytes = d.rexW ? 8 : 4;
    const area = vcpu.getXsave();
    const xmm = XMM_OFFSET + 16 * (d.reg ?? 0);
    if (d.kind === 'movd-to-xmm') {
      let value: Uint8Array;
      if (memAddr !== undefined) {
        const m = read(memAddr, bytes);
        if (typeof m === 'string') return m;
        value = m;
      } else {
        value = toLe(regs[GPR_ORDER[d.rmReg ?? 0]!], bytes);
      }
      // The destination's bits above the moved ones are zeroed; legacy SSE leaves the YMM upper half alone.
      area.fill(0, xmm, xmm + 16);
      area.set(value, xmm);
      const av = dataView(area);
      av.setBigUint64(HEADER, av.getBigUint64(HEADER, true) | 2n, true);
      vcpu.setXsave(area);
      return NEXT;
    }
    if (memAddr !== undefined) {
      const r = write(memAddr, area.slice(xmm, xmm + bytes));
      return r === true ? NEXT : r;
    }
    regs[GPR_ORDER[d.rmReg ?? 0]!] = le(area, xmm, bytes);
    return NEXT;
  }
}

/** The code size the CPU decodes with: real/virtual-8086 16, otherwise CS.L (in IA-32e mode) or CS.D. */
function cpuMode(sregs: Sregs, rflags: bigint): CpuMode {
  if ((sregs.cr0 & 1n) === 0n || rflags & RFLAGS_VM) return 16;
  if (sregs.efer & 0x400n && sregs.cs.l) return 64;
  return sregs.cs.db ? 32 : 16;
}
