// Where detached VMs (`run --detach`) are found by `exec`, `ps`, `stop` and `logs`: one directory
// per VM under the runtime root, holding its vsock socket, its console log and info.json (written
// by the VM's own process, removed by it when the VM ends; a directory whose process is gone is
// stale and is swept), under the runtime root (src/vmm/runtime-dir.ts).
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { TypevisorError } from '../base/errors.js';
import { runtimeRoot } from '../vmm/runtime-dir.js';

export interface VmInfo {
  name: string;
  pid: number;
  started: string;
  guest: string;
  cpus: number;
  memoryMib: number;
  /** 'booting' until the guest agent has answered, then 'running'; 'rebooting' between two boots. */
  state: 'booting' | 'running' | 'rebooting';
  boots: number;
}


export const vmsDir = (): string => join(runtimeRoot(), 'vms');
export const vmDir = (name: string): string => join(vmsDir(), name);
export const vsockPath = (name: string): string => join(vmDir(name), 'vsock.sock');
export const consoleLogPath = (name: string): string => join(vmDir(name), 'console.log');

export function checkVmName(name: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$/.test(name)) {
    throw new TypevisorError('INVALID_ARGUMENT', `'${name}' is not a usable VM name (1–40 letters, digits, _ . -, starting with a letter or digit)`);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readInfo(name: string): VmInfo | undefined {
  try {
    return JSON.parse(readFileSync(join(vmDir(name), 'info.json'), 'utf8')) as VmInfo;
  } catch {
    return undefined;
  }
}

/** The detached VM called `name`, if its process still runs (a stale directory is removed). */
export function findVm(name: string): VmInfo | undefined {
  checkVmName(name);
  const info = readInfo(name);
  if (info && alive(info.pid)) return info;
  if (existsSync(vmDir(name)) && (!info || !alive(info.pid))) {
    // Its process died without cleaning up (kill -9): nothing there is usable. A directory being
    // set up has no info.json yet: leave it to its owner.
    if (info) rmSync(vmDir(name), { recursive: true, force: true });
  }
  return undefined;
}

export function requireVm(name: string): VmInfo {
  const info = findVm(name);
  if (!info) throw new TypevisorError('NOT_FOUND', `no running VM is called '${name}' — 'typevisor ps' lists them; start one with 'typevisor run --detach --name ${name}'`);
  return info;
}

export function listVms(): VmInfo[] {
  if (!existsSync(vmsDir())) return [];
  return readdirSync(vmsDir()).sort().flatMap((name) => {
    try {
      const info = findVm(name);
      return info ? [info] : [];
    } catch {
      return [];
    }
  });
}

/** Claims the directory for a new VM: fails if one of that name runs. */
export function claimVmDir(name: string): string {
  checkVmName(name);
  if (findVm(name)) throw new TypevisorError('INVALID_ARGUMENT', `a VM called '${name}' is already running — choose another --name, or 'typevisor stop ${name}'`);
  const dir = vmDir(name);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

/** Replaces info.json atomically (readers never see half of it). */
export function writeInfo(info: VmInfo): void {
  const path = join(vmDir(info.name), 'info.json');
  writeFileSync(`${path}.tmp`, `${JSON.stringify(info)}\n`);
  renameSync(`${path}.tmp`, path);
}

export function removeVmDir(name: string): void {
  rmSync(vmDir(name), { recursive: true, force: true });
}
