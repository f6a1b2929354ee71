// The Typevisor library API: one VM — create, start, console, wait for exit, stop.
import { Duplex } from 'node:stream';
import { totalmem } from 'node:os';
import { TypevisorError, check } from '../base/errors.js';
import { isPvmHost } from '../kvm/host-kind.js';
import { Serial8250 } from '../devices/legacy/serial8250.js';
import { Machine, type MachineExit } from './machine.js';
import { loadLinux, type LinuxBoot } from './linux-loader.js';
import { guestCommandLine } from './command-line.js';
import { setupVcpuForBoot } from './vcpu-setup.js';
import { PLATFORM, ramRegions } from '../arch/x86_64/layout.js';
import { COM1_IRQ } from './legacy-devices.js';
import { readableMsrs, restoreVcpuState, saveVcpuState, type VcpuState } from './vcpu-state.js';

export interface VmOptions {
  /** Path of the guest kernel: an ELF vmlinux (PVH entry preferred) or a bzImage. */
  kernel: string;
  initrd?: string;
  /** Appended to Typevisor's default kernel command line. */
  cmdline?: string;
  memoryMib?: number;
  vcpus?: number;
  /** Disk images attached as virtio-blk drives, in order: /dev/vda, /dev/vdb, … */
  disks?: { path: string; readOnly?: boolean }[];
  /** A virtio entropy device fed from the host's CSPRNG (default true). */
  rng?: boolean;
  /** Network interfaces (virtio-net), each on a host TAP: eth0, eth1, … */
  nets?: { tap: string; mac?: string }[];
  /** 'auto' (default) detects nested PVM KVM; the others force the choice. */
  hostKvm?: 'auto' | 'pvm' | 'hardware';
}

export interface VmExit {
  reason: 'poweroff' | 'reset' | 'crash' | 'stopped';
  /** One line (or a few) saying why. */
  detail: string;
  vcpu: number;
}

export interface VmMetrics {
  exits: number;
  assists: Record<string, number>;
  /** Per virtio-blk drive: requests, bytes read/written, errors, queue notifications, flushes. */
  disks: ReturnType<Machine['blockMetrics']>;
  /** Per NIC: its TAP and MAC, packets and bytes each way, drops, queue notifications, errors. */
  nets: ReturnType<Machine['netMetrics']>;
  /** The entropy device: requests and bytes handed to the guest. */
  rng: ReturnType<Machine['rngMetrics']>;
  /** CPU time of the I/O worker thread (all virtio devices), ns. */
  ioThreadCpuNs: number;
}

type VmState = 'created' | 'running' | 'paused' | 'exited';

/** How long a guest that printed "reboot: Power down" gets to reach the ACPI sleep register. */
const POWER_OFF_GRACE_MS = 3000;

export class Vm {
  /** The guest's serial console: read guest output, write guest input. */
  readonly console: Duplex;
  private state: VmState = 'created';
  private exitPromise: Promise<VmExit> | undefined;
  private readonly assists: Record<string, number> = {};
  private readonly serial: Serial8250;
  private consoleTail = '';
  private poweredOff = false;

  private constructor(private readonly machine: Machine, readonly boot: LinuxBoot) {
    // The main thread's own view of the UART: input goes into the shared FIFO and raises IRQ 4.
    this.serial = new Serial8250(machine.deviceState.serial, {
      onOutput: () => undefined,
      irq: { set: (level) => machine.irqLine(COM1_IRQ, level) },
    });
    this.console = new Duplex({
      read: () => undefined,
      write: (chunk: Buffer, _enc, callback) => {
        this.sendInput(chunk);
        callback();
      },
    });
  }

  /** Checks the options, reads the kernel and initrd, builds the VM; nothing runs yet. */
  static async create(options: VmOptions): Promise<Vm> {
    const vcpus = options.vcpus ?? 1;
    const memoryMib = options.memoryMib ?? 256;
    check(Number.isInteger(vcpus) && vcpus >= 1, `vCPU count must be a whole number ≥ 1 (got ${vcpus})`);
    check(vcpus <= PLATFORM.MAX_VCPUS, `a VM can have at most ${PLATFORM.MAX_VCPUS} vCPUs (asked for ${vcpus}) — use fewer (--cpus)`);
    check(Number.isInteger(memoryMib) && memoryMib >= 16, `memory must be at least 16 MiB (got ${memoryMib} MiB)`);
    const hostMib = Math.floor(totalmem() / 2 ** 20);
    if (memoryMib > hostMib) {
      throw new TypevisorError('MEMORY_TOO_LARGE',
        `the VM asks for ${memoryMib} MiB but this host has ${hostMib} MiB of memory in all — give it less (--memory)`);
    }
    const pvm = options.hostKvm === 'pvm' || ((options.hostKvm ?? 'auto') === 'auto' && isPvmHost());
    const memoryBytes = memoryMib * 2 ** 20;
    const machine = new Machine({ regions: ramRegions(memoryBytes), vcpus, assist: pvm, disks: options.disks ?? [], nets: options.nets ?? [], rng: options.rng ?? true });
    try {
      const cmdline = guestCommandLine({ user: options.cmdline, pvm });
      const boot = await loadLinux(machine.memory, { kernel: options.kernel, initrd: options.initrd, cmdline, memoryBytes, vcpus });
      machine.vcpus.forEach((vcpu, index) => setupVcpuForBoot(machine, vcpu, index, boot));
      return new Vm(machine, boot);
    } catch (e) {
      await machine.close();
      throw e;
    }
  }

  /** Starts the vCPUs. */
  start(): Promise<void> {
    if (this.state !== 'created') throw new TypevisorError('VM_STATE', `cannot start a VM that is ${this.state}`);
    this.state = 'running';
    const done = this.machine.start({
      onOutput: (bytes) => {
        this.watchForPowerOff(bytes);
        this.console.push(Buffer.from(bytes));
      },
      onAssist: (kind) => { this.assists[kind] = (this.assists[kind] ?? 0) + 1; },
      onDump: (text) => this.emitDump(text),
    });
    this.exitPromise = done.then(async (machineExit: MachineExit) => {
      this.state = 'exited';
      const exit: VmExit = this.poweredOff && machineExit.reason === 'stopped'
        ? { reason: 'poweroff', detail: 'the guest powered off (halted after "reboot: Power down", no ACPI)', vcpu: machineExit.vcpu }
        : machineExit;
      await this.machine.close();
      this.console.push(null);
      return exit;
    });
    return Promise.resolve();
  }

  /**
   * A Linux guest powers off through our ACPI sleep register. One booted without ACPI (acpi=off, a
   * kernel without it) just halts after printing this line: if the VM has not ended a few seconds
   * after the line, it ends there as a power-off.
   */
  private watchForPowerOff(bytes: Uint8Array): void {
    this.consoleTail = (this.consoleTail + Buffer.from(bytes).toString('latin1')).slice(-64);
    if (!this.poweredOff && /reboot: (Power down|System halted)/.test(this.consoleTail)) {
      this.poweredOff = true;
      setTimeout(() => { if (this.state === 'running') this.machine.stop(); }, POWER_OFF_GRACE_MS).unref();
    }
  }

  /**
   * Stops every vCPU (a halted one too) and keeps it stopped until resume(); the guest's kvmclock
   * does not advance meanwhile. Resolves once all vCPUs are stopped.
   */
  async pause(): Promise<void> {
    if (this.state !== 'running') throw new TypevisorError('VM_STATE', `cannot pause a VM that is ${this.state}`);
    this.state = 'paused';
    try {
      await this.machine.pause();
    } catch (e) {
      if (this.state === 'paused') this.state = 'running';
      throw e;
    }
  }

  /** Lets a paused VM run again. */
  resume(): void {
    if (this.state !== 'paused') throw new TypevisorError('VM_STATE', `cannot resume a VM that is ${this.state} (only a paused one)`);
    this.machine.resume();
    this.state = 'running';
  }

  /** Presses the ACPI power button: a guest that handles it shuts down cleanly (graceful stop). */
  powerButton(): void {
    if (this.state !== 'running') throw new TypevisorError('VM_STATE', `cannot press the power button of a VM that is ${this.state}`);
    // The GED's interrupt is edge-triggered: a pulse is one press.
    this.machine.irqLine(PLATFORM.GED_GSI, true);
    this.machine.irqLine(PLATFORM.GED_GSI, false);
  }

  private msrIndices: number[] | undefined;

  /** Every vCPU's full state as plain data. Only while paused. */
  saveVcpuStates(): VcpuState[] {
    if (this.state !== 'paused') throw new TypevisorError('VM_STATE', `vCPU state can be saved only while the VM is paused (it is ${this.state})`);
    this.msrIndices ??= readableMsrs(this.machine.kvm, this.machine.vcpus[0]!);
    const indices = this.msrIndices;
    return this.machine.vcpus.map((v) => saveVcpuState(v, indices));
  }

  /** Puts back states from saveVcpuStates() (one per vCPU). Only while paused. */
  restoreVcpuStates(states: readonly VcpuState[]): void {
    if (this.state !== 'paused') throw new TypevisorError('VM_STATE', `vCPU state can be restored only while the VM is paused (it is ${this.state})`);
    if (states.length !== this.machine.vcpus.length) {
      throw new TypevisorError('INVALID_ARGUMENT', `${states.length} vCPU states given for a VM with ${this.machine.vcpus.length} vCPUs`);
    }
    this.machine.vcpus.forEach((v, i) => restoreVcpuState(v, states[i]!));
  }

  /** 'created', 'running', 'paused' or 'exited'. */
  get status(): VmState {
    return this.state;
  }

  /** Resolves once the VM has ended and its resources are released. */
  waitForExit(): Promise<VmExit> {
    if (!this.exitPromise) throw new TypevisorError('VM_STATE', 'the VM has not been started');
    return this.exitPromise;
  }

  /** Stops the VM (the vCPUs leave KVM_RUN) and releases it. */
  async stop(): Promise<VmExit> {
    if (this.state === 'created') {
      this.state = 'exited';
      await this.machine.close();
      return { reason: 'stopped', detail: 'stopped before it started', vcpu: 0 };
    }
    this.machine.stop();
    return this.waitForExit();
  }

  private dumpListeners: ((text: string) => void)[] = [];

  private emitDump(text: string): void {
    for (const l of this.dumpListeners) l(text);
  }

  /** Each vCPU's registers and the bytes at its RIP, taken without stopping the VM (for diagnosis). */
  dumpState(timeoutMs = 2000): Promise<string[]> {
    if (this.state !== 'running') return Promise.resolve([]);
    const texts: string[] = [];
    return new Promise((resolve) => {
      const listener = (t: string): void => {
        texts.push(t);
        if (texts.length === this.machine.vcpus.length) finish();
      };
      const finish = (): void => {
        clearTimeout(timer);
        this.dumpListeners = this.dumpListeners.filter((l) => l !== listener);
        resolve(texts);
      };
      const timer = setTimeout(finish, timeoutMs);
      this.dumpListeners.push(listener);
      this.machine.requestDump();
    });
  }

  /** Feeds bytes to the guest's serial console (as if typed). */
  sendInput(bytes: Uint8Array): void {
    let offset = 0;
    while (offset < bytes.length) {
      const n = this.serial.enqueueInput(bytes.subarray(offset));
      if (n === 0) break; // The guest is not reading; drop rather than block the host.
      offset += n;
    }
  }

  metrics(): VmMetrics {
    return { exits: this.machine.exitCount, assists: { ...this.assists }, disks: this.machine.blockMetrics(), nets: this.machine.netMetrics(), rng: this.machine.rngMetrics(), ioThreadCpuNs: this.machine.ioThreadCpuNs() };
  }
}
