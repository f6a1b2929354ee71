// Typed wrappers over the /dev/kvm system, VM and vCPU file descriptors (linux/kvm.h); no policy.
import { TypevisorError } from '../base/errors.js';
import * as libc from '../sys/libc.js';
import { KVM, KVM_CAP } from './ioctls.js';
import {
  decodeCpuid, decodeMsrs, decodeRegs, decodeSregs, decodeVcpuEvents, decodeXcrs, encodeCpuid, encodeMemoryRegion,
  encodeMsrs, encodeRegs, encodeSregs, encodeVcpuEvents, encodeXcrs, Fpu, view,
  type CpuidEntry, type MsrEntry, type Regs, type Sregs, type VcpuEvents,
} from './structs.js';
import { decodeExit, type VcpuExit } from './exit.js';

const KVM_API_VERSION = 12;
const MAX_CPUID_ENTRIES = 256;

/** The /dev/kvm system fd. */
export class Kvm {
  private constructor(readonly fd: number) {}

  /** Opens /dev/kvm, turning the usual failures into errors that say what to do. */
  static open(path = '/dev/kvm'): Kvm {
    let fd: number;
    try {
      fd = libc.open(path, libc.O_RDWR);
    } catch (e) {
      const errno = e instanceof TypevisorError ? e.errno : undefined;
      if (errno === 2 || errno === 19) {
        throw new TypevisorError('KVM_UNAVAILABLE',
          `Cannot open ${path}: it does not exist — load the KVM module (modprobe kvm_intel or kvm_amd) ` +
          'or run on a host with hardware virtualization', { cause: e, errno, syscall: 'open' });
      }
      if (errno === 13 || errno === 1) {
        throw new TypevisorError('KVM_PERMISSION',
          `Cannot open ${path}: permission denied — add your user to the 'kvm' group (sudo usermod -aG kvm $USER) ` +
          'and log in again', { cause: e, errno, syscall: 'open' });
      }
      throw e;
    }
    const kvm = new Kvm(fd);
    const version = libc.ioctlValue(fd, KVM.GET_API_VERSION, 0, 'KVM_GET_API_VERSION');
    if (version !== KVM_API_VERSION) {
      libc.close(fd);
      throw new TypevisorError('KVM_API_VERSION', `${path} speaks KVM API ${version}, Typevisor needs ${KVM_API_VERSION}`);
    }
    return kvm;
  }

  checkExtension(cap: number): number {
    return libc.ioctlValue(this.fd, KVM.CHECK_EXTENSION, cap, 'KVM_CHECK_EXTENSION');
  }

  vcpuMmapSize(): number {
    return libc.ioctlValue(this.fd, KVM.GET_VCPU_MMAP_SIZE, 0, 'KVM_GET_VCPU_MMAP_SIZE');
  }

  /** KVM_GET_SUPPORTED_CPUID: what this host's KVM can give a guest. */
  supportedCpuid(): CpuidEntry[] {
    const buf = encodeCpuid([], MAX_CPUID_ENTRIES);
    view(buf).setUint32(0, MAX_CPUID_ENTRIES, true);
    libc.ioctl(this.fd, KVM.GET_SUPPORTED_CPUID, buf, 'KVM_GET_SUPPORTED_CPUID');
    return decodeCpuid(buf);
  }

  /** KVM_GET_MSR_INDEX_LIST: the MSRs KVM saves and restores for a vCPU. */
  msrIndexList(): number[] {
    const max = 1024;
    const buf = new Uint8Array(4 + 4 * max);
    view(buf).setUint32(0, max, true);
    libc.ioctl(this.fd, KVM.GET_MSR_INDEX_LIST, buf, 'KVM_GET_MSR_INDEX_LIST');
    const v = view(buf);
    return Array.from({ length: v.getUint32(0, true) }, (_, i) => v.getUint32(4 + i * 4, true));
  }

  maxVcpus(): number {
    return this.checkExtension(KVM_CAP.MAX_VCPUS) || this.checkExtension(KVM_CAP.NR_VCPUS) || 4;
  }

  createVm(): VmFd {
    return new VmFd(libc.ioctlValue(this.fd, KVM.CREATE_VM, 0, 'KVM_CREATE_VM'));
  }

  close(): void {
    libc.close(this.fd);
  }
}

/** KVM_IRQFD / KVM_IOEVENTFD flag bits. */
export const IRQFD_FLAG_DEASSIGN = 1;
export const IOEVENTFD_FLAG = { DATAMATCH: 1, PIO: 2, DEASSIGN: 4 } as const;

/** A VM fd: memory slots, the in-kernel irqchip and PIT, interrupt lines and eventfds. */
export class VmFd {
  constructor(readonly fd: number) {}

  setUserMemoryRegion(slot: number, gpa: number, size: number, hostAddr: number, flags = 0): void {
    libc.ioctl(this.fd, KVM.SET_USER_MEMORY_REGION, encodeMemoryRegion(slot, flags, gpa, size, hostAddr),
      'KVM_SET_USER_MEMORY_REGION');
  }

  setTssAddr(addr: number): void {
    libc.ioctlValue(this.fd, KVM.SET_TSS_ADDR, addr, 'KVM_SET_TSS_ADDR');
  }

  setIdentityMapAddr(addr: number): void {
    const buf = new Uint8Array(8);
    view(buf).setBigUint64(0, BigInt(addr), true);
    libc.ioctl(this.fd, KVM.SET_IDENTITY_MAP_ADDR, buf, 'KVM_SET_IDENTITY_MAP_ADDR');
  }

  createIrqchip(): void {
    libc.ioctl(this.fd, KVM.CREATE_IRQCHIP, null, 'KVM_CREATE_IRQCHIP');
  }

  /** In-kernel PIT; flags bit 0 = KVM_PIT_SPEAKER_DUMMY. */
  createPit2(flags = 1): void {
    const buf = new Uint8Array(64);
    view(buf).setUint32(0, flags, true);
    libc.ioctl(this.fd, KVM.CREATE_PIT2, buf, 'KVM_CREATE_PIT2');
  }

  irqLine(irq: number, level: boolean): void {
    const buf = new Uint8Array(8);
    const v = view(buf);
    v.setUint32(0, irq, true);
    v.setUint32(4, level ? 1 : 0, true);
    libc.ioctl(this.fd, KVM.IRQ_LINE, buf, 'KVM_IRQ_LINE');
  }

  irqfd(eventFd: number, gsi: number, deassign = false): void {
    const buf = new Uint8Array(32);
    const v = view(buf);
    v.setUint32(0, eventFd, true);
    v.setUint32(4, gsi, true);
    v.setUint32(8, deassign ? IRQFD_FLAG_DEASSIGN : 0, true);
    libc.ioctl(this.fd, KVM.IRQFD, buf, 'KVM_IRQFD');
  }

  ioeventfd(eventFd: number, addr: number, len: number, opts: { pio?: boolean; datamatch?: bigint; deassign?: boolean } = {}): void {
    const buf = new Uint8Array(64);
    const v = view(buf);
    let flags = 0;
    if (opts.datamatch !== undefined) { flags |= IOEVENTFD_FLAG.DATAMATCH; v.setBigUint64(0, opts.datamatch, true); }
    if (opts.pio) flags |= IOEVENTFD_FLAG.PIO;
    if (opts.deassign) flags |= IOEVENTFD_FLAG.DEASSIGN;
    v.setBigUint64(8, BigInt(addr), true);
    v.setUint32(16, len, true);
    v.setInt32(20, eventFd, true);
    v.setUint32(24, flags, true);
    libc.ioctl(this.fd, KVM.IOEVENTFD, buf, 'KVM_IOEVENTFD');
  }

  /** KVM_SET_GSI_ROUTING with MSI routes (type 2) and irqchip routes (type 1). */
  setGsiRouting(routes: readonly GsiRoute[]): void {
    const buf = new Uint8Array(8 + 48 * routes.length);
    const v = view(buf);
    v.setUint32(0, routes.length, true);
    routes.forEach((r, i) => {
      const o = 8 + i * 48;
      v.setUint32(o, r.gsi, true);
      if (r.kind === 'irqchip') {
        v.setUint32(o + 4, 1, true);
        v.setUint32(o + 16, r.irqchip, true);
        v.setUint32(o + 20, r.pin, true);
      } else {
        v.setUint32(o + 4, 2, true);
        v.setUint32(o + 16, r.addressLo, true);
        v.setUint32(o + 20, r.addressHi, true);
        v.setUint32(o + 24, r.data, true);
      }
    });
    libc.ioctl(this.fd, KVM.SET_GSI_ROUTING, buf, 'KVM_SET_GSI_ROUTING');
  }

  signalMsi(addressLo: number, addressHi: number, data: number): number {
    const buf = new Uint8Array(32);
    const v = view(buf);
    v.setUint32(0, addressLo, true);
    v.setUint32(4, addressHi, true);
    v.setUint32(8, data, true);
    return libc.ioctl(this.fd, KVM.SIGNAL_MSI, buf, 'KVM_SIGNAL_MSI');
  }

  /** KVM_GET_DIRTY_LOG: one bit per page of the slot (`pages` pages), set where the guest wrote. */
  getDirtyLog(slot: number, pages: number): Uint8Array {
    // The struct embeds a user pointer, so the bitmap lives in memory whose address we know.
    const len = Math.max(8, Math.ceil(pages / 64) * 8);
    const addr = libc.mmap(len, libc.PROT_READ | libc.PROT_WRITE, libc.MAP_PRIVATE | libc.MAP_ANONYMOUS, -1);
    try {
      const buf = new Uint8Array(16);
      const v = view(buf);
      v.setUint32(0, slot, true);
      v.setBigUint64(8, BigInt(addr), true);
      libc.ioctl(this.fd, KVM.GET_DIRTY_LOG, buf, 'KVM_GET_DIRTY_LOG');
      return new Uint8Array(libc.hostView(addr, len)).slice();
    } finally {
      libc.munmap(addr, len);
    }
  }

  getClock(): { clock: bigint; flags: number } {
    const buf = new Uint8Array(48);
    libc.ioctl(this.fd, KVM.GET_CLOCK, buf, 'KVM_GET_CLOCK');
    const v = view(buf);
    return { clock: v.getBigUint64(0, true), flags: v.getUint32(8, true) };
  }

  setClock(clock: bigint): void {
    const buf = new Uint8Array(48);
    view(buf).setBigUint64(0, clock, true);
    libc.ioctl(this.fd, KVM.SET_CLOCK, buf, 'KVM_SET_CLOCK');
  }

  createVcpu(id: number): number {
    return libc.ioctlValue(this.fd, KVM.CREATE_VCPU, id, 'KVM_CREATE_VCPU');
  }

  close(): void {
    libc.close(this.fd);
  }
}

export type GsiRoute =
  | { kind: 'irqchip'; gsi: number; irqchip: number; pin: number }
  | { kind: 'msi'; gsi: number; addressLo: number; addressHi: number; data: number };

/** KVM_MP_STATE_* values. */
export const MP_STATE = { RUNNABLE: 0, UNINITIALIZED: 1, INIT_RECEIVED: 2, HALTED: 3, SIPI_RECEIVED: 4 } as const;

/**
 * A vCPU fd with its mmap'ed kvm_run page. Built from the fd number on the thread that runs it:
 * fds are process-wide, so the main thread creates the vCPU and the worker wraps it.
 */
export class VcpuFd {
  readonly runPage: Uint8Array;
  private readonly runView: DataView;
  private readonly runAddr: number;

  constructor(readonly fd: number, readonly mmapSize: number) {
    this.runAddr = libc.mmap(mmapSize, libc.PROT_READ | libc.PROT_WRITE, libc.MAP_SHARED, fd, 0, 'mmap(kvm_run)');
    this.runPage = new Uint8Array(libc.hostView(this.runAddr, mmapSize));
    this.runView = new DataView(this.runPage.buffer);
  }

  /** KVM_RUN once. Returns the exit, or 'interrupted' when a signal (a kick) ended it early. */
  run(): VcpuExit | 'interrupted' {
    const r = libc.ioctlRaw(this.fd, KVM.RUN, 0);
    if (r < 0) {
      if (-r === libc.EINTR || -r === libc.EAGAIN) return 'interrupted';
      throw libc.syscallError('KVM_RUN', -r);
    }
    return decodeExit(this.runPage, this.runView);
  }

  set immediateExit(on: boolean) {
    this.runPage[1] = on ? 1 : 0;
  }

  /**
   * Lets KVM finish what the last exit left pending (the data of a port or MMIO read goes into the
   * guest's registers only on the next KVM_RUN) without running guest code: KVM_RUN with
   * immediate_exit set returns at once, after completing it. Needed before saving vCPU state.
   */
  completePendingIo(): void {
    this.immediateExit = true;
    try {
      this.run();
    } finally {
      this.immediateExit = false;
    }
  }

  /** struct kvm_debugregs (db[4], dr6, dr7, flags, reserved) as its raw 128 bytes. */
  getDebugRegs(): Uint8Array {
    const buf = new Uint8Array(128);
    libc.ioctl(this.fd, KVM.GET_DEBUGREGS, buf, 'KVM_GET_DEBUGREGS');
    return buf;
  }

  setDebugRegs(state: Uint8Array): void {
    libc.ioctl(this.fd, KVM.SET_DEBUGREGS, state, 'KVM_SET_DEBUGREGS');
  }

  getRegs(): Regs {
    const buf = new Uint8Array(144);
    libc.ioctl(this.fd, KVM.GET_REGS, buf, 'KVM_GET_REGS');
    return decodeRegs(buf);
  }

  setRegs(r: Regs): void {
    libc.ioctl(this.fd, KVM.SET_REGS, encodeRegs(r), 'KVM_SET_REGS');
  }

  getSregs(): Sregs {
    const buf = new Uint8Array(312);
    libc.ioctl(this.fd, KVM.GET_SREGS, buf, 'KVM_GET_SREGS');
    return decodeSregs(buf);
  }

  setSregs(s: Sregs): void {
    libc.ioctl(this.fd, KVM.SET_SREGS, encodeSregs(s), 'KVM_SET_SREGS');
  }

  getFpu(): Fpu {
    const f = new Fpu();
    libc.ioctl(this.fd, KVM.GET_FPU, f.bytes, 'KVM_GET_FPU');
    return f;
  }

  setFpu(f: Fpu): void {
    libc.ioctl(this.fd, KVM.SET_FPU, f.bytes, 'KVM_SET_FPU');
  }

  getMsrs(indices: readonly number[]): MsrEntry[] {
    const buf = encodeMsrs(indices.map((index) => ({ index, data: 0n })));
    const n = libc.ioctl(this.fd, KVM.GET_MSRS, buf, 'KVM_GET_MSRS');
    return decodeMsrs(buf, n);
  }

  /** Sets MSRs; throws naming the first MSR KVM refused (it stops at the first failure). */
  setMsrs(entries: readonly MsrEntry[]): void {
    const n = libc.ioctl(this.fd, KVM.SET_MSRS, encodeMsrs(entries), 'KVM_SET_MSRS');
    if (n !== entries.length) {
      const bad = entries[n]!;
      throw new TypevisorError('VCPU_FAILED', `KVM refused MSR 0x${bad.index.toString(16)} = 0x${bad.data.toString(16)}`);
    }
  }

  setCpuid(entries: readonly CpuidEntry[]): void {
    libc.ioctl(this.fd, KVM.SET_CPUID2, encodeCpuid(entries), 'KVM_SET_CPUID2');
  }

  getLapic(): Uint8Array {
    const buf = new Uint8Array(1024);
    libc.ioctl(this.fd, KVM.GET_LAPIC, buf, 'KVM_GET_LAPIC');
    return buf;
  }

  setLapic(state: Uint8Array): void {
    libc.ioctl(this.fd, KVM.SET_LAPIC, state, 'KVM_SET_LAPIC');
  }

  getXsave(): Uint8Array {
    const buf = new Uint8Array(4096);
    libc.ioctl(this.fd, KVM.GET_XSAVE, buf, 'KVM_GET_XSAVE');
    return buf;
  }

  setXsave(area: Uint8Array): void {
    libc.ioctl(this.fd, KVM.SET_XSAVE, area, 'KVM_SET_XSAVE');
  }

  getXcrs(): { xcr: number; value: bigint }[] {
    const buf = new Uint8Array(392);
    libc.ioctl(this.fd, KVM.GET_XCRS, buf, 'KVM_GET_XCRS');
    return decodeXcrs(buf);
  }

  setXcrs(xcrs: readonly { xcr: number; value: bigint }[]): void {
    libc.ioctl(this.fd, KVM.SET_XCRS, encodeXcrs(xcrs), 'KVM_SET_XCRS');
  }

  getVcpuEvents(): VcpuEvents {
    const buf = new Uint8Array(64);
    libc.ioctl(this.fd, KVM.GET_VCPU_EVENTS, buf, 'KVM_GET_VCPU_EVENTS');
    return decodeVcpuEvents(buf);
  }

  setVcpuEvents(e: VcpuEvents): void {
    libc.ioctl(this.fd, KVM.SET_VCPU_EVENTS, encodeVcpuEvents(e), 'KVM_SET_VCPU_EVENTS');
  }

  getMpState(): number {
    const buf = new Uint8Array(4);
    libc.ioctl(this.fd, KVM.GET_MP_STATE, buf, 'KVM_GET_MP_STATE');
    return view(buf).getUint32(0, true);
  }

  setMpState(state: number): void {
    const buf = new Uint8Array(4);
    view(buf).setUint32(0, state, true);
    libc.ioctl(this.fd, KVM.SET_MP_STATE, buf, 'KVM_SET_MP_STATE');
  }

  /** KVM_SET_SIGNAL_MASK: the signal mask in force while the vCPU runs (kernel sigset: 8 bytes). */
  setSignalMask(blocked: readonly number[]): void {
    const buf = new Uint8Array(4 + 8);
    view(buf).setUint32(0, 8, true);
    buf.set(libc.sigset(blocked, 8), 4);
    libc.ioctl(this.fd, KVM.SET_SIGNAL_MASK, buf, 'KVM_SET_SIGNAL_MASK');
  }

  /** Unmaps the run page; the fd itself belongs to the VM owner, which closes it. */
  unmap(): void {
    libc.munmap(this.runAddr, this.mmapSize);
  }
}
