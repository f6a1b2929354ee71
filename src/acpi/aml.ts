// A small AML encoder (ACPI 6.5 §20, "ACPI Machine Language Specification"): enough to describe
// devices, their resources, the sleep states and a power-button event method.
import { TypevisorError } from '../base/errors.js';
import { concatBytes } from '../base/bytes.js';

/** An encoded AML term (or a sequence of them). */
export type Aml = Uint8Array;

const OP = {
  ZERO: 0x00,
  ONE: 0x01,
  NAME: 0x08,
  BYTE_PREFIX: 0x0a,
  WORD_PREFIX: 0x0b,
  DWORD_PREFIX: 0x0c,
  STRING_PREFIX: 0x0d,
  QWORD_PREFIX: 0x0e,
  SCOPE: 0x10,
  BUFFER: 0x11,
  PACKAGE: 0x12,
  METHOD: 0x14,
  DUAL_NAME_PREFIX: 0x2e,
  MULTI_NAME_PREFIX: 0x2f,
  EXT_PREFIX: 0x5b,
  DEVICE: 0x82, // after EXT_PREFIX
  LOCAL0: 0x60,
  ARG0: 0x68,
  LEQUAL: 0x93,
  NOTIFY: 0x86,
  IF: 0xa0,
  RETURN: 0xa4,
  ONES: 0xff,
} as const;

export function concat(parts: readonly Aml[]): Aml {
  return concatBytes(parts);
}

/**
 * PkgLength (§20.2.4) for a body of `bodyLength` bytes: the encoded value counts its own bytes too.
 * One byte holds up to 63; otherwise the lead byte's top two bits say how many bytes follow and its
 * low nibble holds the value's low four bits.
 */
export function pkgLength(bodyLength: number): Aml {
  if (bodyLength + 1 <= 0x3f) return Uint8Array.of(bodyLength + 1);
  for (let extra = 1; extra <= 3; extra++) {
    const total = bodyLength + 1 + extra;
    if (total < 2 ** (4 + 8 * extra)) {
      const bytes = [(extra << 6) | (total & 0x0f)];
      for (let i = 0; i < extra; i++) bytes.push((total >>> (4 + 8 * i)) & 0xff);
      return Uint8Array.from(bytes);
    }
  }
  throw new TypevisorError('INTERNAL', `AML package of ${bodyLength} bytes is too long to encode`);
}

const SEGMENT = /^[A-Z_][A-Z0-9_]{0,3}$/;

/** A NameString (§20.2.2): `\\` (root) or `^` (parent) prefixes, then segments separated by dots. */
export function nameString(path: string): Aml {
  let rest = path;
  const prefix: number[] = [];
  if (rest.startsWith('\\')) {
    prefix.push(0x5c);
    rest = rest.slice(1);
  } else {
    while (rest.startsWith('^')) {
      prefix.push(0x5e);
      rest = rest.slice(1);
    }
  }
  const segments = rest === '' ? [] : rest.split('.');
  const encoded = segments.map((s) => {
    if (!SEGMENT.test(s)) throw new TypevisorError('INTERNAL', `'${s}' is not an ACPI name segment (in '${path}')`);
    return Array.from(s.padEnd(4, '_'), (c) => c.charCodeAt(0));
  });
  let body: number[];
  if (encoded.length === 0) body = [0x00];
  else if (encoded.length === 1) body = encoded[0]!;
  else if (encoded.length === 2) body = [OP.DUAL_NAME_PREFIX, ...encoded.flat()];
  else body = [OP.MULTI_NAME_PREFIX, encoded.length, ...encoded.flat()];
  return Uint8Array.from([...prefix, ...body]);
}

/** An Integer constant in its shortest encoding (ZeroOp, OneOp, Byte/Word/DWord/QWord prefixes). */
export function integer(value: number | bigint): Aml {
  const v = BigInt(value);
  if (v < 0n || v > 0xffffffffffffffffn) throw new TypevisorError('INTERNAL', `AML integer ${v} out of range`);
  if (v === 0n) return Uint8Array.of(OP.ZERO);
  if (v === 1n) return Uint8Array.of(OP.ONE);
  const width = v <= 0xffn ? 1 : v <= 0xffffn ? 2 : v <= 0xffffffffn ? 4 : 8;
  const prefix = { 1: OP.BYTE_PREFIX, 2: OP.WORD_PREFIX, 4: OP.DWORD_PREFIX, 8: OP.QWORD_PREFIX }[width];
  const out = new Uint8Array(1 + width);
  out[0] = prefix;
  for (let i = 0; i < width; i++) out[1 + i] = Number((v >> BigInt(8 * i)) & 0xffn);
  return out;
}

/** A String constant: ASCII, NUL-terminated. */
export function string(s: string): Aml {
  if (Array.from(s).some((c) => c.charCodeAt(0) < 1 || c.charCodeAt(0) > 0x7f)) {
    throw new TypevisorError('INTERNAL', `AML string '${s}' is not ASCII without NULs`);
  }
  return Uint8Array.from([OP.STRING_PREFIX, ...Array.from(s, (c) => c.charCodeAt(0)), 0]);
}

/**
 * A compressed EISA ID such as "PNP0A08" (what ASL's EisaId() produces): three letters of five
 * bits each and four hex digits, stored big-endian in a DWord.
 */
export function eisaId(id: string): Aml {
  if (!/^[A-Z]{3}[0-9A-F]{4}$/.test(id)) throw new TypevisorError('INTERNAL', `'${id}' is not an EISA ID`);
  const letters = ((id.charCodeAt(0) - 0x40) << 10) | ((id.charCodeAt(1) - 0x40) << 5) | (id.charCodeAt(2) - 0x40);
  const product = parseInt(id.slice(3), 16);
  return Uint8Array.of(OP.DWORD_PREFIX, letters >> 8, letters & 0xff, product >> 8, product & 0xff);
}

export function name(path: string, value: Aml): Aml {
  return concat([Uint8Array.of(OP.NAME), nameString(path), value]);
}

function withPkgLength(op: readonly number[], body: Aml): Aml {
  return concat([Uint8Array.from(op), pkgLength(body.length), body]);
}

export function scope(path: string, terms: readonly Aml[]): Aml {
  return withPkgLength([OP.SCOPE], concat([nameString(path), ...terms]));
}

export function device(path: string, terms: readonly Aml[]): Aml {
  return withPkgLength([OP.EXT_PREFIX, OP.DEVICE], concat([nameString(path), ...terms]));
}

/** A Method with `args` arguments (0–7), not serialized, sync level 0. */
export function method(path: string, args: number, terms: readonly Aml[]): Aml {
  if (!Number.isInteger(args) || args < 0 || args > 7) throw new TypevisorError('INTERNAL', `AML method with ${args} arguments`);
  return withPkgLength([OP.METHOD], concat([nameString(path), Uint8Array.of(args), ...terms]));
}

export function packageOf(elements: readonly Aml[]): Aml {
  if (elements.length > 255) throw new TypevisorError('INTERNAL', 'AML package with more than 255 elements');
  return withPkgLength([OP.PACKAGE], concat([Uint8Array.of(elements.length), ...elements]));
}

export function buffer(bytes: Uint8Array): Aml {
  return withPkgLength([OP.BUFFER], concat([integer(bytes.length), bytes]));
}

export function returnOf(value: Aml): Aml {
  return concat([Uint8Array.of(OP.RETURN), value]);
}

export function ifThen(predicate: Aml, terms: readonly Aml[]): Aml {
  return withPkgLength([OP.IF], concat([predicate, ...terms]));
}

export function lEqual(a: Aml, b: Aml): Aml {
  return concat([Uint8Array.of(OP.LEQUAL), a, b]);
}

export function notify(path: string, value: Aml): Aml {
  return concat([Uint8Array.of(OP.NOTIFY), nameString(path), value]);
}

export function arg(n: number): Aml {
  if (!Number.isInteger(n) || n < 0 || n > 6) throw new TypevisorError('INTERNAL', `Arg${n} does not exist`);
  return Uint8Array.of(OP.ARG0 + n);
}

export function local(n: number): Aml {
  if (!Number.isInteger(n) || n < 0 || n > 7) throw new TypevisorError('INTERNAL', `Local${n} does not exist`);
  return Uint8Array.of(OP.LOCAL0 + n);
}

export const ONES: Aml = Uint8Array.of(OP.ONES);
