// The Typevisor library API: one VM — create, start, console, wait for exit, stop.
import { Duplex } from 'node:stream';
import { totalmem, tmpdir } from 'node:os';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { TypevisorError, check } from '../base/errors.js';
import { isPvmHost } from '../kvm/host-kind.js';
import { Serial8250 } from '../devices/legacy/serial8250.js';
import { Machine, type MachineExit } from './machine.js';
import { loadLinux, type LinuxBoot } from './linux-loader.js';
import { guestCommandLine } from './command-line.js';
import { kernelIpOption, parseCidr } from './ip-address.js';
import { setupVcpuForBoot } from './vcpu-setup.js';
import { PLATFORM, ramRegions } from '../arch/x86_64/layout.js';
import type { BalloonOptions, NetOptions } from './virtio-devices.js';
import { COM1_IRQ } from './legacy-devices.js';
import { readableMsrs, restoreVcpuState, saveVcpuState, type VcpuState } from './vcpu-state.js';
import { GuestAgent, type AgentHealth, type ExecOptions, type ExecResult, type GuestProcess } from './guest-agent.js';

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
  /** Network interfaces (virtio-net): eth0, eth1, … each on a host TAP (`tap`), or on a TAP of ours made a port of `bridge` (created if absent); exactly one of the two. */
  nets?: NetOptions[];
  /**
   * A virtio-vsock device (on by default: the guest agent speaks over it). Its host side is a Unix
   * socket (Firecracker's hybrid vsock): `socketPath` (default: in a fresh temporary directory,
   * removed with the VM); guest context ID `cid` (default 3). `false`: no vsock device.
   */
  vsock?: false | { cid?: number; socketPath?: string };
  /** A virtio memory balloon: setBalloon(), statistics, free page reporting (default: none; true = every feature). */
  balloon?: boolean | BalloonOptions;
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
  /** The vsock device: connections, bytes and packets each way, resets, drops, credit violations. */
  vsock: ReturnType<Machine['vsockMetrics']>;
  /** The balloon: target and actual size, pages inflated/deflated/reported, bytes given back to the host, the guest's statistics. */
  balloon: ReturnType<Machine['balloonMetrics']>;
  /** Host memory behind guest RAM now (touched and not given back), bytes. */
  guestMemoryInUseBytes: number;
  /** CPU time of the I/O worker thread (all virtio devices), ns. */
  ioThreadCpuNs: number;
  /** Times the I/O worker thread woke up with work (ioThreadCpuNs over this: the cost of one wake-up). */
  ioThreadWakeups: number;
}

type VmState = 'created' | 'running' | 'paused' | 'exited';

/** How long a guest that printed "reboot: Power down" gets to reach the ACPI sleep register. */
const POWER_OFF_GRACE_MS = 3000;

/** The kernel's `ip=` option for the NIC that asks for an address (the kernel configures one). */
function nicAddressOptions(nets: readonly NetOptions[]): string[] {
  const wanting = nets.flatMap((n, i) => (n.address === undefined ? [] : [{ n, device: `eth${i}` }]));
  if (wanting.length > 1) throw new TypevisorError('INVALID_ARGUMENT', 'only one NIC can get its address from the kernel command line (ip= / dhcp); configure the others in the guest');
  return wanting.map(({ n, device }) => {
    if (n.address === 'dhcp') return kernelIpOption(device, 'dhcp');
    const gateway = n.gateway ?? (n.hostAddress === undefined ? undefined : parseCidr(n.hostAddress, 'the host address').address);
    return kernelIpOption(device, { address: parseCidr(n.address!, 'the guest address'), gateway });
  });
}

export class Vm {
  /** The guest's serial console: read guest output, write guest input. */
  readonly console: Duplex;
  private state: VmState = 'created';
  private exitPromise: Promise<VmExit> | undefined;
  private readonly assists: Record<string, number> = {};
  private readonly serial: Serial8250;
  private consoleTail = '';
  private poweredOff = false;

  /** The guest agent through this VM's vsock socket (undefined without vsock). */
  readonly agent: GuestAgent | undefined;
  /** Files in the guest, through its agent. */
  readonly files = {
    write: (path: string, data: string | Uint8Array, opts?: { mode?: number }): Promise<void> => this.requireAgent().writeFile(path, data, opts),
    read: (path: string, opts?: { maxBytes?: number }): Promise<Buffer> => this.requireAgent().readFile(path, opts),
  };
  private agentSeen = false;

  private constructor(private readonly machine: Machine, readonly boot: LinuxBoot, private readonly ownedDir: string | undefined) {
    const vsock = machine.options.vsock;
    this.agent = vsock ? new GuestAgent(vsock.socketPath) : undefined;
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
    // Checked before any TAP or bridge is made.
    const netCmdline = nicAddressOptions(options.nets ?? []);
    const pvm = options.hostKvm === 'pvm' || ((options.hostKvm ?? 'auto') === 'auto' && isPvmHost());
    const memoryBytes = memoryMib * 2 ** 20;
    // The vsock socket lives in a directory of its own unless the caller chose a path.
    const vsockOption = options.vsock ?? {};
    const ownedDir = vsockOption && vsockOption.socketPath === undefined ? mkdtempSync(join(tmpdir(), 'typevisor-')) : undefined;
    const vsock = vsockOption ? { cid: vsockOption.cid ?? 3, socketPath: vsockOption.socketPath ?? join(ownedDir!, 'vsock.sock') } : undefined;
    let machine: Machine;
    try {
      machine = new Machine({
        regions: ramRegions(memoryBytes), vcpus, assist: pvm, disks: options.disks ?? [], nets: options.nets ?? [], rng: options.rng ?? true,
        vsock, balloon: options.balloon === true ? {} : options.balloon || undefined,
      });
    } catch (e) {
      if (ownedDir) rmSync(ownedDir, { recursive: true, force: true });
      throw e;
    }
    try {
      const cmdline = [guestCommandLine({ user: options.cmdline, pvm }), ...netCmdline].join(' ');
      const boot = await loadLinux(machine.memory, { kernel: options.kernel, initrd: options.initrd, cmdline, memoryBytes, vcpus });
      machine.vcpus.forEach((vcpu, index) => setupVcpuForBoot(machine, vcpu, index, boot));
      return new Vm(machine, boot, ownedDir);
    } catch (e) {
      await machine.close();
      if (ownedDir) rmSync(ownedDir, { recursive: true, force: true });
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
      if (this.ownedDir) rmSync(this.ownedDir, { recursive: true, force: true });
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

  /**
   * Lets a paused VM run again. kvmclock skipped the pause, so the guest's wall clock is behind by
   * it: where the guest agent has answered before, it is set to the host's time at once.
   */
  resume(): void {
    if (this.state !== 'paused') throw new TypevisorError('VM_STATE', `cannot resume a VM that is ${this.state} (only a paused one)`);
    this.machine.resume();
    this.state = 'running';
    if (this.agentSeen) void this.agent?.setClock().catch(() => undefined);
  }

  private requireAgent(): GuestAgent {
    if (!this.agent) throw new TypevisorError('AGENT_UNAVAILABLE', 'this VM has no vsock device, so no guest agent — leave the vsock option on');
    if (this.state !== 'running') throw new TypevisorError('VM_STATE', `the guest agent answers only while the VM runs (it is ${this.state})`);
    return this.agent;
  }

  /** The Unix socket of the VM's vsock device (Firecracker's hybrid vsock: "CONNECT <port>\n"), if it has one. */
  get vsockSocketPath(): string | undefined {
    return this.machine.options.vsock?.socketPath;
  }

  /** Waits until the guest agent answers (the guest has booted far enough), at most `timeoutMs`. */
  async waitForAgent(timeoutMs = 300_000): Promise<AgentHealth> {
    const health = await this.requireAgent().waitUntilReady(timeoutMs, () => this.state === 'running');
    this.agentSeen = true;
    return health;
  }

  /** The guest agent's health report: version, uptime, memory, processes. */
  async ping(): Promise<AgentHealth> {
    const health = await this.requireAgent().ping();
    this.agentSeen = true;
    return health;
  }

  /** Runs a command in the guest through its agent: an argv, or a string for `sh -c`. */
  exec(command: string | readonly string[], opts?: ExecOptions): Promise<ExecResult> {
    return this.requireAgent().exec(typeof command === 'string' ? ['sh', '-c', command] : command, opts);
  }

  /** Starts a command in the guest; its stdout/stderr stream while it runs (GuestProcess). */
  spawn(command: string | readonly string[], opts?: Omit<ExecOptions, 'onStdout' | 'onStderr' | 'timeoutMs'>): Promise<GuestProcess> {
    return this.requireAgent().spawn(typeof command === 'string' ? ['sh', '-c', command] : command, opts);
  }

  /** Sets the guest's wall clock to the host's (done by resume() itself once the agent has answered). */
  syncClock(): Promise<void> {
    return this.requireAgent().setClock();
  }

  /** Takes NIC `index` (0 = eth0) down or up, like pulling or plugging its cable; the guest sees the carrier change. */
  setLinkUp(index: number, up: boolean): void {
    this.machine.setLinkUp(index, up);
  }

  /** Asks the guest's balloon driver to hold `mib` MiB (taken from the guest, given back to the host); 0 deflates it. */
  setBalloon(mib: number): void {
    const balloon = this.machine.balloon;
    if (!balloon) throw new TypevisorError('INVALID_ARGUMENT', 'this VM has no balloon device — create it with balloon: true (--balloon)');
    const memoryMib = this.machine.memory.size / 2 ** 20;
    check(Number.isFinite(mib) && mib >= 0 && mib <= memoryMib, `the balloon size must be 0 … ${memoryMib} MiB (the VM's memory), got ${mib}`);
    balloon.setBalloonTarget(mib);
  }

  /** Fresh balloon statistics from the guest (waits up to `timeoutMs` for the driver to answer). */
  async balloonStats(timeoutMs = 5000): Promise<NonNullable<VmMetrics['balloon']>> {
    const balloon = this.machine.balloon;
    const before = this.machine.balloonMetrics();
    if (!balloon || !before) throw new TypevisorError('INVALID_ARGUMENT', 'this VM has no balloon device — create it with balloon: true (--balloon)');
    balloon.requestBalloonStats();
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const now = this.machine.balloonMetrics()!;
      if (now.statsUpdates > before.statsUpdates) return now;
      if (Date.now() > deadline) throw new TypevisorError('TIMEOUT', `the guest's balloon driver sent no statistics within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
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
      if (this.ownedDir) rmSync(this.ownedDir, { recursive: true, force: true });
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
    const m = this.machine;
    return {
      exits: m.exitCount, assists: { ...this.assists }, disks: m.blockMetrics(), nets: m.netMetrics(), rng: m.rngMetrics(), vsock: m.vsockMetrics(),
      balloon: m.balloonMetrics(), guestMemoryInUseBytes: this.state === 'exited' ? 0 : m.guestMemoryInUseBytes(), ioThreadCpuNs: m.ioThreadCpuNs(),
      ioThreadWakeups: m.ioThreadWakeups(),
    };
  }
}
