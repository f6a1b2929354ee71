// Parsing and printing of human byte sizes (512M, 2G, 1048576).
import { TypevisorError } from './errors.js';

const UNITS: Record<string, number> = { '': 1, B: 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40 };

/** Parses `SIZE[K|M|G|T][iB|B]`; a bare number is bytes unless `defaultUnit` says otherwise. */
export function parseSize(text: string, what = 'size', defaultUnit: keyof typeof UNITS = ''): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$/i.exec(text);
  if (!m) {
    throw new TypevisorError('INVALID_ARGUMENT',
      `${what} '${text}' is not a size — write a number with an optional unit, e.g. 512M or 2G`);
  }
  const unit = m[2]!.toUpperCase() || defaultUnit;
  const bytes = Math.round(Number(m[1]) * UNITS[unit]!);
  if (!Number.isSafeInteger(bytes)) throw new TypevisorError('INVALID_ARGUMENT', `${what} '${text}' is too large`);
  return bytes;
}

export function formatSize(bytes: number): string {
  for (const [u, n] of [['G', 2 ** 30], ['M', 2 ** 20], ['K', 2 ** 10]] as const) {
    if (bytes >= n && bytes % n === 0) return `${bytes / n}${u}`;
  }
  return `${bytes}`;
}
