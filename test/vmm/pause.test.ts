// Pause/resume of every vCPU (a spinning one and one blocked in KVM_RUN waiting for SIPI), and a
// vCPU state save → restore that round-trips bit-exact, on a tiny guest on real KVM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { kvmSkip } from '../helpers/kvm.js';
import { assemble } from '../helpers/guest-asm.js';
import { longModeSetup } from '../helpers/tiny-guest.js';
import { Machine } from '../../src/vmm/machine.js';
import { readableMsrs, restoreVcpuState, saveVcpuState, type VcpuState } from '../../src/vmm/vcpu-state.js';
import { zeroRegs } from '../../src/kvm/structs.js';
import { MP_STATE } from '../../src/kvm/kvm.js';

const ORIGIN = 0x100000;
const COUNTER = 0x5000;
const IA32_TSC = 0x10;

async function until(what: string, cond: () => boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** The state without the TSC, which runs on between a save and the next. */
function withoutTsc(s: VcpuState): VcpuState {
  return { ...s, msrs: s.msrs.filter((m) => m.index !== IA32_TSC) };
}

test('pause parks a spinning vCPU and one blocked in KVM_RUN; state save/restore round-trips; resume continues', { skip: kvmSkip }, async () => {
  const image = assemble(`
    .code64
    start:
      mov al, 'S'
      out 0xe9, al
    1:
      inc qword ptr [${COUNTER}]
      jmp 1b
  `, ORIGIN);
  const machine = new Machine({ regions: [{ gpa: 0, size: 16 * 2 ** 20 }], vcpus: 2, assist: true });
  try {
    await assert.rejects(machine.pause(), /not running/);
    machine.memory.write(ORIGIN, image);
    longModeSetup(ORIGIN)(machine);
    let output = '';
    const done = machine.start({ onOutput: (b) => { output += Buffer.from(b).toString('latin1'); } });
    const counter = (): bigint => machine.memory.getU64(COUNTER);
    await until('the counter to move', () => counter() > 10n);

    const t0 = process.hrtime.bigint();
    await machine.pause();
    const pauseMs = Number(process.hrtime.bigint() - t0) / 1e6;
    assert.equal(machine.parkedCount, 2, 'both vCPUs parked');
    const frozen = counter();
    await sleep(300);
    assert.equal(counter(), frozen, 'no guest code ran while paused');

    const [v0, v1] = machine.vcpus as [typeof machine.vcpus[0], typeof machine.vcpus[0]];
    const msrs = readableMsrs(machine.kvm, v0);
    assert.ok(msrs.includes(IA32_TSC), 'the TSC is among the saved MSRs');
    const saved = [saveVcpuState(v0, msrs), saveVcpuState(v1, msrs)];
    assert.equal(saved[1]!.mpState, MP_STATE.UNINITIALIZED, 'the AP still waits for INIT/SIPI');
    assert.ok(saved[0]!.regs.rip >= BigInt(ORIGIN) && saved[0]!.regs.rip < BigInt(ORIGIN + image.length));
    const clone = structuredClone(saved);
    assert.deepEqual(clone, saved, 'plain data: survives structured cloning');

    // Clobber what the restore must put back, then restore and read everything again.
    v0.setRegs({ ...zeroRegs(), rip: 0xdeadn, rflags: 2n });
    const dr = v0.getDebugRegs();
    dr[0] = 0x55;
    v0.setDebugRegs(dr);
    v0.setMsrs([{ index: IA32_TSC, data: 1n }]);
    restoreVcpuState(v0, clone[0]!);
    restoreVcpuState(v1, clone[1]!);
    const again = [saveVcpuState(v0, msrs), saveVcpuState(v1, msrs)];
    assert.deepEqual(again.map(withoutTsc), saved.map(withoutTsc), 'bit-exact round trip (TSC aside)');
    const tsc = (s: VcpuState): bigint => s.msrs.find((m) => m.index === IA32_TSC)!.data;
    const drift = tsc(again[0]!) - tsc(saved[0]!);
    assert.ok(drift >= 0n && drift < 100_000_000_000n, `TSC restored (moved on by ${drift} cycles only)`);

    machine.resume();
    await until('the counter to move after resume', () => counter() > frozen + 10n);
    assert.equal(output, 'S');
    console.log(`pause of 2 vCPUs took ${pauseMs.toFixed(2)} ms`);
    machine.stop();
    const exit = await done;
    assert.equal(exit.reason, 'stopped');
  } finally {
    await machine.close();
  }
});

test('a paused VM can be stopped; pausing twice waits for nothing new', { skip: kvmSkip }, async () => {
  const image = assemble(`
    .code64
    1:
      hlt
      jmp 1b
  `, ORIGIN);
  const machine = new Machine({ regions: [{ gpa: 0, size: 16 * 2 ** 20 }], vcpus: 1, assist: true });
  try {
    machine.memory.write(ORIGIN, image);
    longModeSetup(ORIGIN)(machine);
    const done = machine.start({ onOutput: () => undefined });
    await sleep(100);
    await machine.pause();
    await machine.pause();
    assert.equal(machine.parkedCount, 1);
    machine.stop();
    assert.equal((await done).reason, 'stopped');
  } finally {
    await machine.close();
  }
});
