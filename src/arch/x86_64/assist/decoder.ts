// A small x86 instruction decoder (Intel SDM vol. 2 ch. 2) for the instructions the assist completes.

export type CpuMode = 16 | 32 | 64;
export type SegmentName = 'es' | 'cs' | 'ss' | 'ds' | 'fs' | 'gs';

/** A memory operand as encoded; `effectiveAddress` turns it into an address given the registers. */
export interface MemOperand {
  segment: SegmentName;
  /** Register numbers (0 = rax … 15 = r15), or undefined. */
  base: number | undefined;
  index: number | undefined;
  scale: 1 | 2 | 4 | 8;
  disp: bigint;
  ripRelative: boolean;
  addressSize: 16 | 32 | 64;
}

export type InstructionKind =
  | 'int3' | 'int' | 'ud2' | 'fwait' | 'ldmxcsr' | 'stmxcsr' | 'fxsave' | 'fxrstor' | 'xsave' | 'xrstor'
  | 'xsaveopt' | 'clflush' | 'clflushopt' | 'clwb' | 'lfence' | 'mfence' | 'sfence' | 'xgetbv' | 'xsetbv'
  | 'rdrand' | 'rdseed' | 'cmpxchg8b' | 'cmpxchg16b' | 'popcnt' | 'movd-to-xmm' | 'movd-from-xmm';

/** A recognised instruction. */
export interface DecodedInstruction {
  kind: InstructionKind;
  /** Bytes from the first prefix to the end of the instruction (1..15). */
  length: number;
  /** ModRM reg field (with REX.R), the register operand. */
  reg?: number;
  /** ModRM rm register (with REX.B) when mod = 3. */
  rmReg?: number;
  mem?: MemOperand;
  rexW: boolean;
  /** A 66 prefix that is not the instruction's mandatory prefix (16-bit operand size). */
  operandSize16: boolean;
  /** A LOCK (F0) prefix: only some instructions allow it, the others raise #UD. */
  lock: boolean;
  imm?: number;
}

export interface UnknownInstruction {
  kind: 'unknown';
  bytes: Uint8Array;
  reason: string;
}

export type Decoded = DecodedInstruction | UnknownInstruction;

const SEGMENT_PREFIX: Record<number, SegmentName> = { 0x26: 'es', 0x2e: 'cs', 0x36: 'ss', 0x3e: 'ds', 0x64: 'fs', 0x65: 'gs' };
/** The architectural instruction length limit: longer encodings raise #GP. */
export const MAX_INSTRUCTION_LENGTH = 15;
/** 16-bit ModRM rm → base and index register (SDM vol. 2 table 2-1): bx=3, bp=5, si=6, di=7. */
const RM16: readonly [number | undefined, number | undefined][] = [
  [3, 6], [3, 7], [5, 6], [5, 7], [undefined, 6], [undefined, 7], [5, undefined], [3, undefined],
];

class Cursor {
  pos = 0;
  constructor(readonly bytes: Uint8Array) {}
  /** True while every byte consumed so far existed and the length limit holds. */
  get ok(): boolean { return this.pos <= this.bytes.length && this.pos <= MAX_INSTRUCTION_LENGTH; }
  u8(): number {
    const b = this.bytes[this.pos++];
    return b ?? -1;
  }
  signed(n: 1 | 2 | 4): bigint {
    let v = 0n;
    for (let i = 0; i < n; i++) {
      const b = this.u8();
      if (b < 0) return 0n;
      v |= BigInt(b) << BigInt(8 * i);
    }
    return BigInt.asIntN(8 * n, v);
  }
}

interface ModRm {
  mod: number;
  reg: number;
  rm: number;
  mem?: MemOperand;
}

/**
 * Decodes the instruction at the start of `bytes` for a CPU in `mode` (the code segment's
 * default size; 64 = long mode with CS.L). Never throws: anything it does not know, or that
 * runs past the bytes given or the 15-byte limit, comes back as `unknown` with a reason.
 */
export function decode(bytes: Uint8Array, mode: CpuMode): Decoded {
  const unknown = (reason: string): UnknownInstruction =>
    ({ kind: 'unknown', bytes: bytes.slice(0, MAX_INSTRUCTION_LENGTH), reason });
  const c = new Cursor(bytes);
  let segment: SegmentName | undefined;
  let opsize = false;
  let adsize = false;
  let lock = false;
  let rep: 0xf2 | 0xf3 | undefined;
  let rex = 0;
  const isRex = (x: number): boolean => mode === 64 && x >= 0x40 && x <= 0x4f;
  let b = c.u8();
  // Legacy prefixes in any order; a REX counts only directly before the opcode, so a legacy
  // prefix after it cancels it (SDM vol. 2 2.2.1).
  for (;;) {
    if (b in SEGMENT_PREFIX) segment = SEGMENT_PREFIX[b];
    else if (b === 0x66) opsize = true;
    else if (b === 0x67) adsize = true;
    else if (b === 0xf2 || b === 0xf3) rep = b;
    else if (b === 0xf0) lock = true;
    else if (!isRex(b)) break;
    rex = isRex(b) ? b : 0;
    if (c.pos >= MAX_INSTRUCTION_LENGTH) return unknown('longer than 15 bytes');
    b = c.u8();
  }
  if (b < 0) return unknown('truncated');
  const rexW = (rex & 8) !== 0;
  const addressSize: 16 | 32 | 64 = mode === 64 ? (adsize ? 32 : 64) : mode === 32 ? (adsize ? 16 : 32) : (adsize ? 32 : 16);
  /** `mandatory66`: the 66 prefix selects the instruction rather than the operand size. */
  const done = (kind: InstructionKind, extra: Partial<DecodedInstruction> = {}, mandatory66 = false): Decoded =>
    c.ok
      ? { kind, length: c.pos, rexW, operandSize16: opsize && !mandatory66, lock, ...extra }
      : unknown('longer than 15 bytes or truncated');

  const modrm = (): ModRm | undefined => {
    const m = c.u8();
    if (m < 0) return undefined;
    const mod = m >> 6;
    const reg = ((m >> 3) & 7) | (rex & 4 ? 8 : 0);
    const rmLow = m & 7;
    if (mod === 3) return { mod, reg, rm: rmLow | (rex & 1 ? 8 : 0) };
    let base: number | undefined;
    let index: number | undefined;
    let scale: 1 | 2 | 4 | 8 = 1;
    let ripRelative = false;
    let disp = 0n;
    if (addressSize === 16) {
      [base, index] = RM16[rmLow]!;
      if (mod === 0 && rmLow === 6) {
        base = undefined;
        disp = c.signed(2);
      }
      if (mod === 1) disp = c.signed(1);
      else if (mod === 2) disp = c.signed(2);
    } else {
      base = rmLow | (rex & 1 ? 8 : 0);
      if (rmLow === 4) {
        const sib = c.u8();
        if (sib < 0) return undefined;
        scale = (1 << (sib >> 6)) as 1 | 2 | 4 | 8;
        const idx = ((sib >> 3) & 7) | (rex & 2 ? 8 : 0);
        index = idx === 4 ? undefined : idx;
        const sibBase = sib & 7;
        base = sibBase | (rex & 1 ? 8 : 0);
        if (sibBase === 5 && mod === 0) {
          base = undefined;
          disp = c.signed(4);
        }
      } else if (rmLow === 5 && mod === 0) {
        base = undefined;
        // In 64-bit mode this form is RIP-relative; elsewhere it is a bare disp32.
        ripRelative = mode === 64;
        disp = c.signed(4);
      }
      if (mod === 1) disp = c.signed(1);
      else if (mod === 2) disp = c.signed(4);
    }
    // rSP/rBP as base default to SS (not r12/r13, whose low bits match: REX.B makes them 12/13).
    const defaultSeg: SegmentName = base === 4 || base === 5 ? 'ss' : 'ds';
    return { mod, reg, rm: rmLow, mem: { segment: segment ?? defaultSeg, base, index, scale, disp, ripRelative, addressSize } };
  };
  /** Register or memory operand of a ModRM form, for the result. */
  const operands = (m: ModRm): Partial<DecodedInstruction> =>
    m.mem ? { reg: m.reg, mem: m.mem } : { reg: m.reg, rmReg: m.rm };

  switch (b) {
    case 0xcc: return done('int3');
    case 0xcd: {
      const imm = c.u8();
      return imm < 0 ? unknown('truncated') : done('int', { imm });
    }
    case 0x9b: return done('fwait');
    case 0x0f: break;
    default: return unknown(`opcode ${b.toString(16).padStart(2, '0')}`);
  }
  const op = c.u8();
  if (op < 0) return unknown('truncated');
  switch (op) {
    case 0x0b: return done('ud2');
    case 0x01: {
      const m = c.u8();
      if (m === 0xd0 && !opsize && rep === undefined) return done('xgetbv');
      if (m === 0xd1 && !opsize && rep === undefined) return done('xsetbv');
      return unknown(m < 0 ? 'truncated' : `0f 01 ${m.toString(16)}`);
    }
    case 0xae: {
      const m = modrm();
      if (!m) return unknown('truncated ModRM');
      const r = m.reg & 7;
      // F3/F2/66 select other instructions in this group (rdfsbase, incssp, umonitor, tpause...).
      if (m.mod === 3) {
        if (opsize || rep !== undefined) return unknown('0f ae register form with a mandatory prefix');
        if (r === 5) return done('lfence');
        if (r === 6) return done('mfence');
        if (r === 7) return done('sfence');
        return unknown('0f ae with a register operand');
      }
      if (rep !== undefined) return unknown('0f ae memory form with an f2/f3 prefix');
      if (opsize) {
        if (r === 6) return done('clwb', { mem: m.mem! }, true);
        if (r === 7) return done('clflushopt', { mem: m.mem! }, true);
        return unknown('0f ae memory form with a 66 prefix');
      }
      const kinds: InstructionKind[] = ['fxsave', 'fxrstor', 'ldmxcsr', 'stmxcsr', 'xsave', 'xrstor', 'xsaveopt', 'clflush'];
      return done(kinds[r]!, { mem: m.mem! });
    }
    case 0xc7: {
      const m = modrm();
      if (!m) return unknown('truncated ModRM');
      const r = m.reg & 7;
      if (rep === undefined && m.mod === 3 && r === 6) return done('rdrand', { rmReg: m.rm });
      if (rep === undefined && m.mod === 3 && r === 7) return done('rdseed', { rmReg: m.rm });
      if (m.mod !== 3 && r === 1 && !opsize && rep === undefined) return done(rexW ? 'cmpxchg16b' : 'cmpxchg8b', { mem: m.mem! });
      return unknown(`0f c7 /${r}${m.mod === 3 ? ' register form' : ''}`);
    }
    case 0xb8: {
      if (rep !== 0xf3) return unknown('0f b8 without f3 (jmpe)');
      const m = modrm();
      if (!m) return unknown('truncated ModRM');
      return done('popcnt', operands(m));
    }
    case 0x6e:
    case 0x7e: {
      // Without 66 these are MMX moves; F3 0F 7E is movq xmm, xmm/m64.
      if (!opsize || rep !== undefined) return unknown(`0f ${op.toString(16)} without a lone 66 prefix`);
      const m = modrm();
      if (!m) return unknown('truncated ModRM');
      return done(op === 0x6e ? 'movd-to-xmm' : 'movd-from-xmm', operands(m), true);
    }
    default:
      return unknown(`opcode 0f ${op.toString(16).padStart(2, '0')}`);
  }
}

/**
 * The effective address (before the segment base) of a memory operand: base + index·scale +
 * displacement, plus the address of the next instruction when RIP-relative, truncated to the
 * address size. `gpr` is indexed by register number (rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8…).
 */
export function effectiveAddress(mem: MemOperand, gpr: readonly bigint[], nextRip: bigint): bigint {
  let ea = mem.disp;
  if (mem.ripRelative) ea += nextRip;
  if (mem.base !== undefined) ea += gpr[mem.base] ?? 0n;
  if (mem.index !== undefined) ea += (gpr[mem.index] ?? 0n) * BigInt(mem.scale);
  return BigInt.asUintN(mem.addressSize, ea);
}
