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
  | 'xsaveopt' | 'clflush' | 'lfence' | 'mfence' | 'sfence' | 'xgetbv' | 'xsetbv' | 'rdrand' | 'rdseed'
  | 'cmpxchg8b' | 'cmpxchg16b' | 'popcnt' | 'movd-to-xmm' | 'movd-from-xmm';

export type Decoded =
  | {
    kind: InstructionKind;
    length: number;
    /** ModRM reg field (with REX.R), the register operand. */
    reg?: number;
    /** ModRM rm register (with REX.B) when mod = 3. */
    rmReg?: number;
    mem?: MemOperand;
    rexW: boolean;
    operandSize16: boolean;
    imm?: number;
  }
  | { kind: 'unknown'; bytes: Uint8Array; reason: string };

const SEGMENT_PREFIX: Record<number, SegmentName> = { 0x26: 'es', 0x2e: 'cs', 0x36: 'ss', 0x3e: 'ds', 0x64: 'fs', 0x65: 'gs' };
const MAX_LENGTH = 15;

class Cursor {
  pos = 0;
  constructor(readonly bytes: Uint8Array) {}
  get ok(): boolean { return this.pos <= this.bytes.length && this.pos <= MAX_LENGTH; }
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

/** Decodes the instruction at the start of `bytes`. Never throws. */
export function decode(bytes: Uint8Array, mode: CpuMode): Decoded {
  const unknown = (reason: string): Decoded => ({ kind: 'unknown', bytes: bytes.slice(0, MAX_LENGTH), reason });
  const c = new Cursor(bytes);
  let segment: SegmentName | undefined;
  let opsize = false;
  let adsize = false;
  let rep: 0xf2 | 0xf3 | undefined;
  let b = c.u8();
  for (let n = 0; n < 14; n++) {
    if (b in SEGMENT_PREFIX) segment = SEGMENT_PREFIX[b];
    else if (b === 0x66) opsize = true;
    else if (b === 0x67) adsize = true;
    else if (b === 0xf2 || b === 0xf3) rep = b;
    else if (b !== 0xf0) break;
    b = c.u8();
  }
  let rex = 0;
  if (mode === 64 && b >= 0x40 && b <= 0x4f) {
    rex = b;
    b = c.u8();
  }
  if (b < 0) return unknown('truncated');
  const rexW = (rex & 8) !== 0;
  const addressSize: 16 | 32 | 64 = mode === 64 ? (adsize ? 32 : 64) : mode === 32 ? (adsize ? 16 : 32) : (adsize ? 32 : 16);
  const done = (kind: InstructionKind, extra: Partial<Extract<Decoded, { length: number }>> = {}): Decoded =>
    c.ok ? { kind, length: c.pos, rexW, operandSize16: opsize, ...extra } : unknown('longer than 15 bytes or truncated');

  /** ModRM (+ SIB + displacement) → reg, and a memory operand or rm register. */
  const modrm = (): { mod: number; reg: number; rm: number; mem?: MemOperand } | undefined => {
    const m = c.u8();
    if (m < 0) return undefined;
    const mod = m >> 6;
    const reg = ((m >> 3) & 7) | (rex & 4 ? 8 : 0);
    const rmLow = m & 7;
    if (mod === 3) return { mod, reg, rm: rmLow | (rex & 1 ? 8 : 0) };
    if (addressSize === 16) return undefined; // 16-bit addressing: not needed by the assist
    let base: number | undefined = rmLow | (rex & 1 ? 8 : 0);
    let index: number | undefined;
    let scale: 1 | 2 | 4 | 8 = 1;
    let ripRelative = false;
    let disp = 0n;
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
      ripRelative = mode === 64;
      disp = c.signed(4);
    }
    if (mod === 1) disp = c.signed(1);
    else if (mod === 2) disp = c.signed(4);
    const defaultSeg: SegmentName = base === 4 || base === 5 ? 'ss' : 'ds';
    return { mod, reg, rm: rmLow, mem: { segment: segment ?? defaultSeg, base, index, scale, disp, ripRelative, addressSize } };
  };

  switch (b) {
    case 0xcc: return done('int3');
    case 0xcd: {
      const imm = c.u8();
      return imm < 0 ? unknown('truncated') : done('int', { imm });
    }
    case 0x9b: return done('fwait');
    case 0x0f: break;
    default: return unknown(`opcode 0x${b.toString(16)}`);
  }
  const op = c.u8();
  switch (op) {
    case 0x0b: return done('ud2');
    case 0x01: {
      const m = c.u8();
      if (m === 0xd0) return done('xgetbv');
      if (m === 0xd1) return done('xsetbv');
      return unknown(`0f 01 ${m.toString(16)}`);
    }
    case 0xae: {
      const m = modrm();
      if (!m) return unknown('bad ModRM');
      const r = m.reg & 7;
      if (m.mod === 3) {
        if (r === 5) return done('lfence');
        if (r === 6) return done('mfence');
        if (r === 7) return done('sfence');
        return unknown('0f ae with a register operand');
      }
      const kinds: InstructionKind[] = ['fxsave', 'fxrstor', 'ldmxcsr', 'stmxcsr', 'xsave', 'xrstor', 'xsaveopt', 'clflush'];
      return done(kinds[r]!, { mem: m.mem! });
    }
    case 0xc7: {
      const m = modrm();
      if (!m) return unknown('bad ModRM');
      const r = m.reg & 7;
      if (m.mod === 3 && r === 6) return done('rdrand', { rmReg: m.rm });
      if (m.mod === 3 && r === 7) return done('rdseed', { rmReg: m.rm });
      if (m.mod !== 3 && r === 1) return done(rexW ? 'cmpxchg16b' : 'cmpxchg8b', { mem: m.mem! });
      return unknown('0f c7 form');
    }
    case 0xb8: {
      if (rep !== 0xf3) return unknown('0f b8 without f3');
      const m = modrm();
      if (!m) return unknown('bad ModRM');
      return done('popcnt', m.mem ? { reg: m.reg, mem: m.mem } : { reg: m.reg, rmReg: m.rm });
    }
    case 0x6e:
    case 0x7e: {
      if (!opsize) return unknown('MMX movd');
      const m = modrm();
      if (!m) return unknown('bad ModRM');
      const kind = op === 0x6e ? 'movd-to-xmm' : 'movd-from-xmm';
      return done(kind, m.mem ? { reg: m.reg, mem: m.mem } : { reg: m.reg, rmReg: m.rm });
    }
    default:
      return unknown(`opcode 0f ${op < 0 ? '(truncated)' : op.toString(16)}`);
  }
}

/** The effective address (before the segment base) of a memory operand. */
export function effectiveAddress(mem: MemOperand, gpr: readonly bigint[], nextRip: bigint): bigint {
  let ea = mem.disp;
  if (mem.ripRelative) ea += nextRip;
  if (mem.base !== undefined) ea += gpr[mem.base] ?? 0n;
  if (mem.index !== undefined) ea += (gpr[mem.index] ?? 0n) * BigInt(mem.scale);
  return BigInt.asUintN(mem.addressSize, ea);
}
