// The assist: completes instructions that KVM's x86 emulator cannot (nested PVM KVM), then lets the guest resume.
import type { GuestMemory } from '../../../memory/guest-memory.js';
import type { Regs, Sregs } from '../../../kvm/structs.js';
import { decode, effectiveAddress, type CpuMode, type Decoded, type MemOperand } from './decoder.js';
import { readLinear, writeLinear, type PagingState } from './page-walk.js';

/** What the assist needs from one vCPU (implemented over the KVM vCPU fd by the VMM). */
export interface AssistVcpu {
  getRegs(): Regs;
  setRegs(r: Regs): void;
  getSregs(): Sregs;
  /**
   * KVM_GET/SET_XSAVE: the standard (non-compacted) XSAVE layout, 4096 bytes. MXCSR is read and
   * written here too: on our PVM hosts KVM_GET/SET_FPU ignore it.
   */
  getXsave(): Uint8Array;
  setXsave(area: Uint8Array): void;
  getXcr0(): bigint;
  /** Injects an exception through KVM_SET_VCPU_EVENTS (the guest's IDT delivers it). */
  injectException(vector: number, errorCode?: number): void;
}

export type AssistOutcome = { handled: true; kind: string } | { handled: false; report: string };

/** Offset and size of an XSAVE state component (CPUID leaf 0xD, subleaf = component). */
export interface XsaveComponent {
  component: number;
  offset: number;
  size: number;
}

const VECTOR_BP = 3;
const VECTOR_OF = 4;
const VECTOR_UD = 6;
const VECTOR_GP = 13;
const LEGACY_SIZE = 512;
const XSAVE_HEADER = 512;
const MXCSR_OFFSET = 24;
const XMM_OFFSET = 160;
const MXCSR_RESERVED = 0xffff0000;
const FLAGS_CF = 1n;
const FLAGS_ARITH = 0x8d5n; // CF PF AF ZF SF OF
const FLAGS_ZF = 0x40n;
const GPR_ORDER = ['rax', 'rcx', 'rdx', 'rbx', 'rsp', 'rbp', 'rsi', 'rdi', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'] as const;

export class InstructionAssist {
  private readonly counters: Record<string, number> = {};
  private readonly components: XsaveComponent[];

  constructor(private readonly memory: GuestMemory, xsaveLayout: readonly XsaveComponent[] = []) {
    this.components = xsaveLayout.filter((c) => c.component >= 2 && c.offset + c.size <= 4096);
  }

  counts(): Record<string, number> {
    return { ...this.counters };
  }

  handle(vcpu: AssistVcpu): AssistOutcome {
    const regs = vcpu.getRegs();
    const sregs = vcpu.getSregs();
    const mode: CpuMode = (sregs.cr0 & 1n) === 0n ? 16 : sregs.efer & 0x400n && sregs.cs.l ? 64 : sregs.cs.db ? 32 : 16;
    const paging: PagingState = { cr0: sregs.cr0, cr3: sregs.cr3, cr4: sregs.cr4, efer: sregs.efer };
    const linear = mode === 64 ? regs.rip : BigInt.asUintN(32, sregs.cs.base + regs.rip);
    const bytes = this.fetch(linear, paging);
    const where = `rip 0x${regs.rip.toString(16)} (${mode}-bit, cpl ${sregs.cs.dpl})`;
    if (!bytes) return { handled: false, report: `cannot read the instruction at ${where}: not mapped` };
    const d = decode(bytes, mode);
    const hex = Array.from(bytes.subarray(0, 'length' in d ? d.length : 15), (b) => b.toString(16).padStart(2, '0')).join(' ');
    if (d.kind === 'unknown') return { handled: false, report: `unsupported instruction [${hex}] at ${where}: ${d.reason}` };
    const result = this.complete(vcpu, d, regs, sregs, paging, mode);
    if (result !== true) return { handled: false, report: `${d.kind} [${hex}] at ${where}: ${result}` };
    this.counters[d.kind] = (this.counters[d.kind] ?? 0) + 1;
    return { handled: true, kind: d.kind };
  }

  /** Up to 15 bytes at `linear`, fewer if the next page is unmapped. */
  private fetch(linear: bigint, paging: PagingState): Uint8Array | undefined {
    const inPage = 4096 - Number(linear & 0xfffn);
    return readLinear(this.memory, linear, 15, paging) ?? readLinear(this.memory, linear, Math.min(15, inPage), paging);
  }

  /** Performs the instruction; true, or why it could not. */
  private complete(vcpu: AssistVcpu, d: Extract<Decoded, { length: number }>, regs: Regs, sregs: Sregs,
    paging: PagingState, mode: CpuMode): true | string {
    const next = BigInt.asUintN(mode === 64 ? 64 : 32, regs.rip + BigInt(d.length));
    const advance = (): void => {
      regs.rip = next;
      vcpu.setRegs(regs);
    };
    const gpr = GPR_ORDER.map((n) => regs[n]);
    const address = (mem: MemOperand): bigint => {
      const ea = effectiveAddress(mem, gpr, next);
      const base = mode === 64 ? (mem.segment === 'fs' || mem.segment === 'gs' ? sregs[mem.segment].base : 0n) : sregs[mem.segment].base;
      return mode === 64 ? BigInt.asUintN(64, base + ea) : BigInt.asUintN(32, base + ea);
    };
    const read = (mem: MemOperand, n: number): Uint8Array | undefined => readLinear(this.memory, address(mem), n, paging);
    const write = (mem: MemOperand, data: Uint8Array): boolean => writeLinear(this.memory, address(mem), data, paging);

    switch (d.kind) {
      case 'int3':
        // A trap: the guest's #BP handler sees RIP after the int3.
        advance();
        vcpu.injectException(VECTOR_BP);
        return true;
      case 'int':
        if (d.imm !== VECTOR_BP && d.imm !== VECTOR_OF) return `software interrupt ${d.imm} cannot be injected as an exception`;
        advance();
        vcpu.injectException(d.imm);
        return true;
      case 'ud2':
        // A fault: RIP stays on the ud2 (Linux's BUG/WARN handler looks at it there).
        vcpu.injectException(VECTOR_UD);
        return true;
      case 'fwait':
      case 'lfence':
      case 'mfence':
      case 'sfence':
        // No unmasked x87 exceptions are ever pending in our guests, and the emulator runs in order.
        advance();
        return true;
      case 'ldmxcsr': {
        const b = read(d.mem!, 4);
        if (!b) return 'memory operand not mapped';
        const value = new DataView(b.buffer).getUint32(0, true);
        if (value & MXCSR_RESERVED) {
          vcpu.injectException(VECTOR_GP, 0);
          return true;
        }
        const area = vcpu.getXsave();
        new DataView(area.buffer, area.byteOffset).setUint32(MXCSR_OFFSET, value, true);
        vcpu.setXsave(area);
        advance();
        return true;
      }
      case 'stmxcsr': {
        const out = new Uint8Array(4);
        const area = vcpu.getXsave();
        out.set(area.subarray(MXCSR_OFFSET, MXCSR_OFFSET + 4));
        if (!write(d.mem!, out)) return 'memory operand not mapped';
        advance();
        return true;
      }
      case 'fxsave':
      case 'xsave':
      case 'xsaveopt':
      case 'fxrstor':
      case 'xrstor': {
        const addr = address(d.mem!);
        const align = d.kind.startsWith('fx') ? 16n : 64n;
        if (addr % align !== 0n) {
          vcpu.injectException(VECTOR_GP, 0);
          return true;
        }
        const rfbm = d.kind.startsWith('fx') ? 3n : vcpu.getXcr0() & ((regs.rdx << 32n) | (regs.rax & 0xffffffffn));
        const r = d.kind === 'fxrstor' || d.kind === 'xrstor'
          ? this.restore(vcpu, addr, rfbm, paging, d.kind === 'xrstor')
          : this.save(vcpu, addr, rfbm, paging, d.kind !== 'fxsave');
        if (r !== true) return r;
        advance();
        return true;
      }
      case 'rdrand':
      case 'rdseed': {
        const bits = d.rexW ? 64 : d.operandSize16 ? 16 : 32;
        const rnd = new BigUint64Array(1);
        crypto.getRandomValues(rnd);
        const name = GPR_ORDER[d.rmReg!]!;
        regs[name] = bits === 16 ? (regs[name] & ~0xffffn) | (rnd[0]! & 0xffffn) : BigInt.asUintN(bits, rnd[0]!);
        regs.rflags = (regs.rflags & ~FLAGS_ARITH) | FLAGS_CF;
        advance();
        return true;
      }
      case 'popcnt': {
        const bits = d.rexW ? 64 : d.operandSize16 ? 16 : 32;
        let src: bigint;
        if (d.mem) {
          const b = read(d.mem, bits / 8);
          if (!b) return 'memory operand not mapped';
          src = b.reduceRight((acc, x) => (acc << 8n) | BigInt(x), 0n);
        } else {
          src = BigInt.asUintN(bits, regs[GPR_ORDER[d.rmReg!]!]);
        }
        let count = 0n;
        for (let v = src; v; v >>= 1n) count += v & 1n;
        const name = GPR_ORDER[d.reg!]!;
        regs[name] = bits === 16 ? (regs[name] & ~0xffffn) | count : count;
        regs.rflags = (regs.rflags & ~FLAGS_ARITH) | (src === 0n ? FLAGS_ZF : 0n);
        advance();
        return true;
      }
      case 'movd-to-xmm':
      case 'movd-from-xmm': {
        // SSE moves in kernel-FPU sections (e.g. a checksum self-test): XMM registers live in the XSAVE legacy area.
        const bytes = d.rexW ? 8 : 4;
        const area = vcpu.getXsave();
        const xmm = XMM_OFFSET + 16 * d.reg!;
        if (d.kind === 'movd-to-xmm') {
          let value: Uint8Array;
          if (d.mem) {
            const m = read(d.mem, bytes);
            if (!m) return 'memory operand not mapped';
            value = m;
          } else {
            value = new Uint8Array(8);
            new DataView(value.buffer).setBigUint64(0, regs[GPR_ORDER[d.rmReg!]!], true);
          }
          area.fill(0, xmm, xmm + 16);
          area.set(value.subarray(0, bytes), xmm);
          const av = new DataView(area.buffer, area.byteOffset);
          av.setBigUint64(XSAVE_HEADER, av.getBigUint64(XSAVE_HEADER, true) | 2n, true);
          vcpu.setXsave(area);
        } else if (d.mem) {
          if (!write(d.mem, area.slice(xmm, xmm + bytes))) return 'memory operand not mapped';
        } else {
          const low = new DataView(area.buffer, area.byteOffset + xmm).getBigUint64(0, true);
          regs[GPR_ORDER[d.rmReg!]!] = BigInt.asUintN(bytes * 8, low);
        }
        advance();
        return true;
      }
      default:
        return 'the assist does not complete this instruction';
    }
  }

  /** Byte ranges of the components in `rfbm` inside the XSAVE area (x87 and SSE share the legacy region). */
  private ranges(rfbm: bigint): { component: number; offset: number; size: number }[] {
    const out: { component: number; offset: number; size: number }[] = [];
    if (rfbm & 1n) out.push({ component: 0, offset: 0, size: 24 }, { component: 0, offset: 32, size: 128 });
    if (rfbm & 2n) out.push({ component: 1, offset: 160, size: 256 });
    for (const c of this.components) if (rfbm & (1n << BigInt(c.component))) out.push(c);
    return out;
  }

  /** Bytes of guest memory an (F)XSAVE image with these components covers. */
  private span(rfbm: bigint, extended: boolean): number {
    return extended ? Math.max(XSAVE_HEADER + 64, ...this.ranges(rfbm).map((r) => r.offset + r.size)) : LEGACY_SIZE;
  }

  private restore(vcpu: AssistVcpu, addr: bigint, rfbm: bigint, paging: PagingState, extended: boolean): true | string {
    const image = readLinear(this.memory, addr, this.span(rfbm, extended), paging);
    if (!image) return 'XSAVE area not mapped';
    const mv = new DataView(image.buffer);
    const memBv = extended ? mv.getBigUint64(XSAVE_HEADER, true) : 3n;
    if (extended && mv.getBigUint64(XSAVE_HEADER + 8, true) >> 63n) return 'compacted XSAVE format is not supported';
    const area = vcpu.getXsave();
    const av = new DataView(area.buffer, area.byteOffset, area.byteLength);
    for (const r of this.ranges(rfbm)) {
      if (memBv & (1n << BigInt(r.component))) area.set(image.subarray(r.offset, r.offset + r.size), r.offset);
      else area.fill(0, r.offset, r.offset + r.size);
      if (r.component === 0 && !(memBv & 1n)) av.setUint16(0, 0x37f, true); // x87 init: FCW
    }
    if (rfbm & 6n) {
      const mxcsr = mv.getUint32(MXCSR_OFFSET, true);
      if (mxcsr & MXCSR_RESERVED) {
        vcpu.injectException(VECTOR_GP, 0);
        return true;
      }
      av.setUint32(MXCSR_OFFSET, mxcsr, true);
    }
    if (extended) {
      const bv = av.getBigUint64(XSAVE_HEADER, true);
      av.setBigUint64(XSAVE_HEADER, (bv & ~rfbm) | (memBv & rfbm), true);
    }
    vcpu.setXsave(area);
    return true;
  }

  private save(vcpu: AssistVcpu, addr: bigint, rfbm: bigint, paging: PagingState, extended: boolean): true | string {
    const area = vcpu.getXsave();
    const av = new DataView(area.buffer, area.byteOffset, area.byteLength);
    const image = readLinear(this.memory, addr, this.span(rfbm, extended), paging);
    if (!image) return 'XSAVE area not mapped';
    for (const r of this.ranges(rfbm)) image.set(area.subarray(r.offset, r.offset + r.size), r.offset);
    const iv = new DataView(image.buffer);
    if (rfbm & 6n) {
      iv.setUint32(MXCSR_OFFSET, av.getUint32(MXCSR_OFFSET, true), true);
      iv.setUint32(MXCSR_OFFSET + 4, 0xffff, true); // MXCSR_MASK
    }
    if (extended) {
      const kvmBv = av.getBigUint64(XSAVE_HEADER, true);
      const memBv = iv.getBigUint64(XSAVE_HEADER, true);
      iv.setBigUint64(XSAVE_HEADER, (memBv & ~rfbm) | (kvmBv & rfbm), true);
    }
    return writeLinear(this.memory, addr, image, paging) ? true : 'XSAVE area not mapped';
  }
}
