// Assembles tiny test guests from source at test time with the machine's binutils (no checked-in binaries).
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from './native.js';

/**
 * Assembles Intel-syntax source into a flat binary linked at `origin`. The source chooses its own
 * mode with `.code16` / `.code32` / `.code64`.
 */
export function assemble(source: string, origin: number): Uint8Array {
  const dir = tempDir('typevisor-guest-');
  const src = join(dir, 'guest.S');
  const obj = join(dir, 'guest.o');
  const bin = join(dir, 'guest.bin');
  writeFileSync(src, `.intel_syntax noprefix\n${source}\n`);
  execFileSync('as', ['--64', '-o', obj, src], { stdio: 'pipe' });
  execFileSync('ld', ['-m', 'elf_x86_64', '--oformat', 'binary', '-Ttext', `0x${origin.toString(16)}`, '-o', bin, obj],
    { stdio: 'pipe' });
  return new Uint8Array(readFileSync(bin));
}
