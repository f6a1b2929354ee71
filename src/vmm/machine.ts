// One VM's KVM objects: the VM fd, guest memory (memfd, mapped once), vCPUs and their worker threads.
import { Worker } from 'node:worker_threads';
import { fstatSync } from 'node:fs';
import { threadCpuNs } from '../sys/thread-cpu.js';
import { TypevisorError, check } from '../base/errors.js';
import { Kvm, VcpuFd, VmFd } from '../kvm/kvm.js';
import { KVM_CAP } from '../kvm/ioctls.js';
import * as libc from '../sys/libc.js';
import { GuestMemory, type MemoryRegion } from '../memory/guest-memory.js';
import { createLegacyDeviceState } from './legacy-devices.js';
import { VirtioDevices, type BalloonOptions, type DiskOptions, type NetOptions, type VsockOptions } from './virtio-devices.js';
import { xsaveLayout } from './vcpu-assist.js';
import type { XsaveComponent } from '../arch/x86_64/assist/instruction-assist.js';
import { CONTROL, type ExitReason, type VcpuWorkerData, type WorkerMessage } from './vcpu-protocol.js';

/** Real-time signal used to kick a vCPU thread out of KVM_RUN (blocked outside KVM_RUN). */
const KICK_SIGNAL = 40;
/** Where KVM puts the TSS and identity map pages it needs on Intel; inside the 32-bit hole. */
const TSS_ADDR = 0xfffbd000;
const IDENTITY_MAP_ADDR = 0xfffbc000;

/**
 * Machines whose vCPUs may be running. When this process exits — normally or on an uncaught
 * exception — Node waits for every worker thread, and a vCPU thread inside KVM_RUN never comes
 * back to JavaScript by itself: the guest would keep running in a process that can no longer
 * exit. So on 'exit' every live machine's vCPUs are told to stop and kicked (synchronously).
 */
const liveMachines = new Set<Machine>();
process.on('exit', () => {
  for (const m of liveMachines) m.stopOnProcessExit();
});

export interface MachineOptions {
  /** RAM regions (guest physical), e.g. below and above the PCI hole. */
  regions: readonly { gpa: number; size: number }[];
  vcpus: number;
  /** Complete instructions KVM's emulator cannot (needed on PVM hosts). */
  assist: boolean;
  /** Disk images attached as virtio-blk drives (vda, vdb, …). */
  disks?: readonly DiskOptions[];
  /** A virtio entropy device (default: absent; Vm adds one). */
  rng?: boolean;
  nets?: readonly NetOptions[];
  /** A virtio-vsock device with its host side on a Unix socket (Firecracker's hybrid vsock). */
  vsock?: VsockOptions | undefined;
  /** A virtio memory balloon (statistics, free page reporting). */
  balloon?: BalloonOptions | undefined;
}

export interface MachineExit {
  reason: ExitReason;
  detail: string;
  vcpu: number;
}

/** Callbacks from the vCPU threads to the owner of the machine. */
export interface MachineEvents {
  onOutput(bytes: Uint8Array): void;
  onAssist?(kind: string): void;
  /** A vCPU's registers and the bytes at its RIP, in answer to requestDump(). */
  onDump?(text: string): void;
}

export class Machine {
  readonly kvm: Kvm;
  readonly vm: VmFd;
  readonly memory: GuestMemory;
  readonly vcpus: VcpuFd[] = [];
  readonly deviceState = createLegacyDeviceState();
  readonly control = new SharedArrayBuffer(4 * CONTROL.SLOTS);
  private readonly regions: MemoryRegion[];
  private readonly memfd: number;
  private readonly memoryAddr: number;
  private readonly memoryBytes: number;
  private readonly mmapSize: number;
  private workers: Worker[] = [];
  private tids: number[] = [];
  private exitResult: Promise<MachineExit> | undefined;
  private closed = false;
  private readonly xsaveLayout: XsaveComponent[];
  private drives: VirtioDevices | undefined;

  constructor(readonly options: MachineOptions, kvm = Kvm.open()) {
    try {
      Machine.checkHost(kvm, options);
    } catch (e) {
      kvm.close();
      throw e;
    }
    this.kvm = kvm;
    let hostOffset = 0;
    this.regions = options.regions.map((r) => {
      const region = { gpa: r.gpa, size: r.size, hostOffset };
      hostOffset += r.size;
      return region;
    });
    this.memoryBytes = hostOffset;
    this.vm = kvm.createVm();
    this.memfd = -1;
    this.memoryAddr = 0;
    try {
      this.memfd = libc.memfdCreate('typevisor-guest-ram');
      libc.ftruncate(this.memfd, this.memoryBytes);
      this.memoryAddr = libc.mmap(this.memoryBytes, libc.PROT_READ | libc.PROT_WRITE,
        libc.MAP_SHARED | libc.MAP_NORESERVE, this.memfd, 0, 'mmap(guest memory)');
      this.memory = new GuestMemory(new Uint8Array(libc.hostView(this.memoryAddr, this.memoryBytes)), this.regions);
      this.regions.forEach((r, slot) => this.vm.setUserMemoryRegion(slot, r.gpa, r.size, this.memoryAddr + r.hostOffset));
      this.vm.setTssAddr(TSS_ADDR);
      this.vm.setIdentityMapAddr(IDENTITY_MAP_ADDR);
      this.vm.createIrqchip();
      this.vm.createPit2();
      this.drives = new VirtioDevices(this.vm, options.disks ?? [], { rng: options.rng ?? false, nets: options.nets ?? [], vsock: options.vsock, balloon: options.balloon });
      for (const w of this.drives.wirings) {
        this.deviceState.pci.functions.push(w.state.config);
        this.deviceState.virtio.push(w);
      }
      this.mmapSize = kvm.vcpuMmapSize();
      this.xsaveLayout = xsaveLayout(kvm.supportedCpuid());
      for (let i = 0; i < options.vcpus; i++) this.vcpus.push(new VcpuFd(this.vm.createVcpu(i), this.mmapSize));
    } catch (e) {
      this.releaseResources();
      throw e;
    }
  }

  private static checkHost(kvm: Kvm, options: MachineOptions): void {
    check(options.vcpus >= 1, `a VM needs at least one vCPU (got ${options.vcpus}) — use --cpus 1 or more`);
    const max = kvm.maxVcpus();
    check(options.vcpus <= max, `this host's KVM allows at most ${max} vCPUs per VM (asked for ${options.vcpus})`);
    for (const cap of [KVM_CAP.IRQCHIP, KVM_CAP.USER_MEMORY, KVM_CAP.PIT2, KVM_CAP.IRQFD, KVM_CAP.IOEVENTFD]) {
      if (kvm.checkExtension(cap) === 0) {
        throw new TypevisorError('KVM_UNAVAILABLE', `this host's KVM lacks capability ${cap}, which Typevisor needs`);
      }
    }
  }

  /** Starts one worker per vCPU; resolves when the VM has ended (all workers have exited). */
  start(events: MachineEvents): Promise<MachineExit> {
    if (this.exitResult) throw new TypevisorError('VM_STATE', 'the VM is already started');
    if (this.closed) throw new TypevisorError('VM_STATE', 'the VM is closed');
    const control = new Int32Array(this.control);
    liveMachines.add(this);
    this.drives?.start({ vmFd: this.vm.fd, memfd: this.memfd, memoryAddr: this.memoryAddr, memoryBytes: this.memoryBytes, regions: this.regions, kickSignal: KICK_SIGNAL },
      (why) => events.onOutput(new TextEncoder().encode(`\ntypevisor: the I/O thread failed: ${why}\n`)));
    this.exitResult = new Promise<MachineExit>((resolve) => {
      let first: MachineExit | undefined;
      this.running = this.vcpus.length;
      this.vcpus.forEach((vcpu, index) => {
        const data: VcpuWorkerData = {
          index, vcpuFd: vcpu.fd, vmFd: this.vm.fd, mmapSize: this.mmapSize, memoryAddr: this.memoryAddr,
          memoryBytes: this.memoryBytes, regions: this.regions, deviceState: this.deviceState, control: this.control,
          kickSignal: KICK_SIGNAL, assist: this.options.assist, xsaveLayout: this.xsaveLayout,
        };
        const worker = new Worker(new URL('./vcpu-worker.js', import.meta.url), { workerData: data });
        const finish = (exit: MachineExit): void => {
          if (!first || (first.reason === 'stopped' && exit.reason !== 'stopped')) first = exit;
          // The first vCPU to end the VM stops the others.
          Atomics.store(control, CONTROL.STOP, 1);
          this.kickAll();
        };
        worker.on('message', (m: WorkerMessage) => {
          if (m.type === 'ready') this.tids[index] = m.tid;
          else if (m.type === 'output') events.onOutput(m.bytes);
          else if (m.type === 'assist') events.onAssist?.(m.kind);
          else if (m.type === 'dump') events.onDump?.(m.text);
          else if (m.type === 'exit') finish({ reason: m.reason, detail: m.detail, vcpu: index });
        });
        worker.on('error', (e) => finish({ reason: 'crash', detail: `vCPU ${index} thread failed: ${e.message}`, vcpu: index }));
        worker.on('exit', () => {
          if (--this.running === 0) {
            liveMachines.delete(this);
            resolve(first ?? { reason: 'stopped', detail: 'stopped', vcpu: 0 });
          }
        });
        this.workers.push(worker);
      });
    });
    return this.exitResult;
  }

  /** Asks every vCPU to report its state (through onDump) without stopping the VM. */
  requestDump(): void {
    Atomics.add(new Int32Array(this.control), CONTROL.DUMP, 1);
    this.kickAll();
  }

  /** Asks every vCPU to leave KVM_RUN and its loop; the start() promise then resolves. */
  stop(): void {
    const control = new Int32Array(this.control);
    Atomics.store(control, CONTROL.STOP, 1);
    Atomics.notify(control, CONTROL.PAUSE);
    this.kickAll();
  }

  /** For the process 'exit' hook: stop and kick, nothing asynchronous. */
  stopOnProcessExit(): void {
    this.stop();
    this.drives?.requestStop();
  }

  /** vCPU workers still running (not yet exited). */
  private running = 0;
  /** kvmclock when the VM was paused: put back on resume, so the guest's clock skips the pause. */
  private pausedClock: bigint | undefined;

  /**
   * Parks every vCPU outside KVM_RUN (a halted one too: the kick interrupts its wait) and freezes
   * kvmclock. Resolves once all are parked; their state can then be read and written.
   */
  async pause(timeoutMs = 5000): Promise<void> {
    if (!this.exitResult || this.closed) throw new TypevisorError('VM_STATE', 'the VM is not running');
    const control = new Int32Array(this.control);
    Atomics.store(control, CONTROL.PAUSE, 1);
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      this.kickAll();
      const parked = Atomics.load(control, CONTROL.PAUSED);
      if (parked >= this.running) break;
      if (Date.now() > deadline) {
        this.resume();
        throw new TypevisorError('VM_STATE', `only ${parked} of ${this.running} vCPUs stopped within ${timeoutMs} ms; the VM was left running`);
      }
      // Wakes when a vCPU parks; the short timeout re-kicks a thread that had not yet said 'ready'.
      const wait = Atomics.waitAsync(control, CONTROL.PAUSED, parked, 50);
      if (wait.async) await wait.value;
    }
    this.pausedClock = this.vm.getClock().clock;
  }

  /** Lets the parked vCPUs run again, with kvmclock where pause() found it. */
  resume(): void {
    if (this.pausedClock !== undefined) {
      this.vm.setClock(this.pausedClock);
      this.pausedClock = undefined;
    }
    const control = new Int32Array(this.control);
    Atomics.store(control, CONTROL.PAUSE, 0);
    Atomics.notify(control, CONTROL.PAUSE);
  }

  /** How many vCPUs are parked right now. */
  get parkedCount(): number {
    return Atomics.load(new Int32Array(this.control), CONTROL.PAUSED);
  }

  /** Interrupts KVM_RUN on every vCPU thread that has reported its thread id. */
  private kickAll(): void {
    const pid = libc.getpid();
    for (const tid of this.tids) {
      if (tid === undefined) continue;
      try {
        libc.tgkill(pid, tid, KICK_SIGNAL);
      } catch {
        // The thread has already exited.
      }
    }
  }

  /** A worker that has not yet said 'ready' cannot be kicked; keep kicking until all have exited. */
  async stopAndJoin(): Promise<MachineExit | undefined> {
    if (!this.exitResult) return undefined;
    this.stop();
    const timer = setInterval(() => this.kickAll(), 20);
    try {
      return await this.exitResult;
    } finally {
      clearInterval(timer);
    }
  }

  get exitCount(): number {
    return Atomics.load(new Int32Array(this.control), CONTROL.EXITS);
  }

  get assistCount(): number {
    return Atomics.load(new Int32Array(this.control), CONTROL.ASSISTS);
  }

  /** Per-drive request counters (see BlockDeviceMetrics). */
  blockMetrics(): ReturnType<VirtioDevices['deviceMetrics']> {
    return this.drives?.deviceMetrics() ?? [];
  }

  /** CPU time the I/O worker thread has used, in ns (0 before it runs): the VMM's cost of device I/O. */
  ioThreadCpuNs(): number {
    const tid = this.drives?.ioTid;
    return tid === undefined ? 0 : threadCpuNs(tid);
  }

  /** Times the I/O worker thread woke up with work to do. */
  ioThreadWakeups(): number {
    return this.drives?.ioWakeups ?? 0;
  }

  netMetrics(): ReturnType<VirtioDevices['netMetrics']> {
    return this.drives?.netMetrics() ?? [];
  }

  rngMetrics(): ReturnType<VirtioDevices['rngMetrics']> {
    return this.drives?.rngMetrics();
  }

  vsockMetrics(): ReturnType<VirtioDevices['vsockMetrics']> {
    return this.drives?.vsockMetrics();
  }

  balloonMetrics(): ReturnType<VirtioDevices['balloonMetrics']> {
    return this.drives?.balloonMetrics();
  }

  setLinkUp(index: number, up: boolean): void {
    if (!this.drives) throw new TypevisorError('INVALID_ARGUMENT', 'the VM has no NICs');
    this.drives.setLinkUp(index, up);
  }

  /** The balloon device, if the VM has one (its target and statistics). */
  get balloon(): Pick<VirtioDevices, 'setBalloonTarget' | 'requestBalloonStats'> | undefined {
    return this.options.balloon ? this.drives : undefined;
  }

  /** Host memory behind guest RAM, in bytes: the pages of the memfd that exist (touched and not given back). */
  guestMemoryInUseBytes(): number {
    return fstatSync(this.memfd).blocks * 512;
  }

  /** Raises or lowers an interrupt line of the in-kernel irqchip from the main thread. */
  irqLine(irq: number, level: boolean): void {
    this.vm.irqLine(irq, level);
  }

  /** Joins the workers, then releases memory and fds. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    await this.stopAndJoin();
    await this.drives?.stopWorker();
    this.releaseResources();
  }

  private releaseResources(): void {
    if (this.closed) return;
    this.closed = true;
    this.drives?.close();
    for (const v of this.vcpus) {
      v.unmap();
      libc.close(v.fd);
    }
    if (this.memoryAddr) libc.munmap(this.memoryAddr, this.memoryBytes);
    if (this.memfd >= 0) libc.close(this.memfd);
    this.vm.close();
    this.kvm.close();
  }
}
