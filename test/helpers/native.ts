// Test helpers for building native fixtures (C programs, assembled guests) with the host toolchain.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A fresh temporary directory for one test's build products. */
export function tempDir(prefix = 'typevisor-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Compiles a C source with the machine's gcc and returns the executable's path. */
export function compileC(source: string, args: readonly string[] = []): string {
  const dir = tempDir();
  const src = join(dir, 'prog.c');
  const exe = join(dir, 'prog');
  writeFileSync(src, source);
  execFileSync('gcc', ['-O2', '-o', exe, src, ...args], { stdio: 'pipe' });
  return exe;
}

/** Runs a compiled program and returns its stdout. */
export function runProgram(exe: string, args: readonly string[] = []): string {
  return execFileSync(exe, args, { encoding: 'utf8' });
}
