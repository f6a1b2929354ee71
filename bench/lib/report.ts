// Shared helpers for benchmark scripts: statistics and the final machine-readable RESULT line.

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Prints the last line of every benchmark: `RESULT {json}` with every figure and ratio. */
export function printResult(result: Record<string, unknown>): void {
  console.log(`RESULT ${JSON.stringify({ date: new Date().toISOString(), ...result })}`);
}
