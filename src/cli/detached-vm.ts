// `typevisor run --detach`: the VM runs in a process of its own, in the background. The parent
// checks the options and builds the guest (progress on its terminal), claims the VM's directory
// (vm-registry.ts), starts the child and returns once the child has the VM running — or reports
// why it could not. The child keeps the console in console.log, reboots the guest when it resets,
// turns SIGTERM into an ACPI power-button press (SIGINT: a hard stop) and removes the directory
// when the VM ends.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, openSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { TypevisorError, type ErrorCode } from '../base/errors.js';
import type { Vm } from '../vmm/vm.js';
import { claimVmDir, consoleLogPath, removeVmDir, vsockPath, writeInfo, type VmInfo } from './vm-registry.js';
import { createVm, type RunOptions } from './run-command.js';

export const DETACHED_CHILD_FLAG = '--detached-child';
const BIN = fileURLToPath(new URL('../bin/typevisor.js', import.meta.url));
/** How long a guest gets to shut down after the power button before it is stopped hard. */
const GRACEFUL_STOP_MS = 30_000;

type ChildMessage = { type: 'started' } | { type: 'failed'; message: string; code: ErrorCode };

export async function startDetached(opts: RunOptions): Promise<number> {
  const name = opts.name ?? `vm-${randomBytes(3).toString('hex')}`;
  const dir = claimVmDir(name);
  // The child's own stderr (a crash of the VMM process itself) goes to vmm.log beside the console.
  const log = openSync(join(dir, 'vmm.log'), 'a');
  const child = spawn(process.execPath, [BIN, 'run', DETACHED_CHILD_FLAG], { detached: true, stdio: ['ignore', log, log, 'ipc'] });
  closeSync(log);
  const outcome = await new Promise<ChildMessage>((resolve) => {
    child.once('message', (m: ChildMessage) => resolve(m));
    child.once('exit', (code, signal) => resolve({ type: 'failed', code: 'INTERNAL', message: `the VM process ended at start (${signal ?? `status ${code}`}); see ${join(dir, 'vmm.log')}` }));
    child.send({ name, opts });
  });
  if (outcome.type === 'failed') {
    removeVmDir(name);
    throw new TypevisorError(outcome.code, outcome.message);
  }
  child.disconnect();
  child.unref();
  process.stdout.write(`${name}\n`);
  if (!opts.quiet) process.stderr.write(`typevisor: ${name} is booting (pid ${child.pid}); 'typevisor exec ${name} -- CMD' runs commands once its agent is up\n`);
  return 0;
}

/** The detached VM's own process: told its options by the parent over IPC. */
export async function runDetachedChild(): Promise<number> {
  const { name, opts } = await new Promise<{ name: string; opts: RunOptions }>((resolve) => process.once('message', resolve));
  const consoleLog = createWriteStream(consoleLogPath(name), { flags: 'a' });
  const info: VmInfo = {
    name, pid: process.pid, started: new Date().toISOString(), guest: opts.assets.name, cpus: opts.vcpus, memoryMib: opts.memoryMib, state: 'booting', boots: 0,
  };
  let vm: Vm | undefined;
  let stopping = false;
  process.on('SIGTERM', () => {
    if (stopping || !vm) return;
    stopping = true;
    const current = vm;
    try {
      current.powerButton();
    } catch {
      void current.stop();
    }
    setTimeout(() => void current.stop(), GRACEFUL_STOP_MS).unref();
  });
  process.on('SIGINT', () => { stopping = true; void vm?.stop(); });
  process.on('SIGHUP', () => undefined);
  try {
    for (;;) {
      try {
        vm = await createVm(opts, '', vsockPath(name));
      } catch (e) {
        if (info.boots === 0) {
          const code = e instanceof TypevisorError ? e.code : 'INTERNAL';
          process.send?.({ type: 'failed', message: e instanceof Error ? e.message : String(e), code } satisfies ChildMessage);
          return 1;
        }
        consoleLog.write(`\ntypevisor: cannot boot the guest again: ${e instanceof Error ? e.message : String(e)}\n`);
        return 1;
      }
      info.boots++;
      info.state = 'booting';
      writeInfo(info);
      const current = vm;
      current.console.on('data', (d: Buffer) => consoleLog.write(d));
      await current.start();
      if (info.boots === 1) {
        process.send?.({ type: 'started' } satisfies ChildMessage);
        process.disconnect?.();
      }
      void current.waitForAgent().then(() => {
        if (vm === current && !stopping) { info.state = 'running'; writeInfo(info); }
      }, () => undefined);
      const exit = await current.waitForExit();
      consoleLog.write(`\ntypevisor: the VM ended: ${exit.reason} (${exit.detail})\n`);
      if (exit.reason !== 'reset' || opts.noReboot || stopping) return exit.reason === 'crash' ? 1 : 0;
      info.state = 'rebooting';
      writeInfo(info);
    }
  } finally {
    await new Promise<void>((resolve) => consoleLog.end(resolve));
    removeVmDir(name);
  }
}
