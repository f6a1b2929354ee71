// A process whose main thread dies (uncaught exception) while vCPUs run guest code must still exit:
// Node waits for worker threads, and a vCPU thread inside KVM_RUN never returns by itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { kvmSkip } from '../helpers/kvm.js';
import { assemble } from '../helpers/guest-asm.js';
import { tempDir } from '../helpers/native.js';

const ORIGIN = 0x100000;
const dist = (p: string): string => fileURLToPath(new URL(`../../${p}`, import.meta.url));

test('an uncaught exception on the main thread ends the process although both vCPUs are in KVM_RUN', { skip: kvmSkip, timeout: 60_000 }, async () => {
  const dir = tempDir();
  // vCPU 0 spins in guest mode; vCPU 1 waits for a SIPI inside KVM_RUN.
  writeFileSync(join(dir, 'spin.bin'), assemble('.code64\n 1: inc qword ptr [0x5000]\n jmp 1b\n', ORIGIN));
  const script = join(dir, 'crash.mjs');
  writeFileSync(script, `
    import { readFileSync } from 'node:fs';
    import { Machine } from ${JSON.stringify(dist('src/vmm/machine.js'))};
    import { longModeSetup } from ${JSON.stringify(dist('test/helpers/tiny-guest.js'))};
    const machine = new Machine({ regions: [{ gpa: 0, size: 16 * 2 ** 20 }], vcpus: 2, assist: true });
    machine.memory.write(${ORIGIN}, readFileSync(${JSON.stringify(join(dir, 'spin.bin'))}));
    longModeSetup(${ORIGIN})(machine);
    void machine.start({ onOutput: () => undefined });
    const wait = setInterval(() => {
      if (machine.memory.getU64(0x5000) > 100n) {
        clearInterval(wait);
        console.log('spinning');
        setTimeout(() => { throw new Error('main thread dies'); }, 200);
      }
    }, 10);
  `);
  const child = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  let spinningAt = 0;
  child.stdout.on('data', () => { if (!spinningAt && out.includes('spinning')) spinningAt = Date.now(); });
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((r) => child.on('close', (c, s) => r([c, s])));
  clearTimeout(killer);
  assert.ok(spinningAt > 0, `the guest never ran: ${out} ${err}`);
  assert.equal(signal, null, `the process had to be killed: it hung after its main thread died\n${err}`);
  assert.equal(code, 1);
  assert.match(err, /main thread dies/);
  assert.ok(Date.now() - spinningAt < 10_000);
});
