// A vCPU's complete architectural state as plain data (structured-cloneable), saved and restored
// through KVM — what pause/resume checks, and what snapshots and migration will carry.
import type { Kvm, VcpuFd } from '../kvm/kvm.js';
import type { MsrEntry, Regs, Sregs, VcpuEvents } from '../kvm/structs.js';

export interface VcpuState {
  regs: Regs;
  sregs: Sregs;
  /** KVM_GET_XSAVE: x87, SSE (incl. MXCSR) and every enabled extended component. */
  xsave: Uint8Array;
  xcrs: { xcr: number; value: bigint }[];
  /** Every MSR KVM saves for this vCPU, TSC and kvmclock's included. */
  msrs: MsrEntry[];
  /** struct kvm_lapic_state: the in-kernel local APIC's registers. */
  lapic: Uint8Array;
  events: VcpuEvents;
  mpState: number;
  /** struct kvm_debugregs. */
  debugRegs: Uint8Array;
}

/**
 * The MSRs of KVM_GET_MSR_INDEX_LIST that this vCPU can read (KVM lists MSRs of features the
 * vCPU's CPUID may not have; KVM_GET_MSRS stops at the first of those, so drop each and retry).
 */
export function readableMsrs(kvm: Kvm, vcpu: VcpuFd): number[] {
  const indices = kvm.msrIndexList();
  for (;;) {
    const read = vcpu.getMsrs(indices).length;
    if (read === indices.length) return indices;
    indices.splice(read, 1);
  }
}

/** Reads the whole state. The vCPU must not be in KVM_RUN (pause it first) and have no I/O pending. */
export function saveVcpuState(vcpu: VcpuFd, msrIndices: readonly number[]): VcpuState {
  return {
    regs: vcpu.getRegs(),
    sregs: vcpu.getSregs(),
    xsave: vcpu.getXsave(),
    xcrs: vcpu.getXcrs(),
    msrs: vcpu.getMsrs(msrIndices),
    lapic: vcpu.getLapic(),
    events: vcpu.getVcpuEvents(),
    mpState: vcpu.getMpState(),
    debugRegs: vcpu.getDebugRegs(),
  };
}

/**
 * Writes a saved state back. The order matters to KVM: MP state first, sregs before the LAPIC
 * (APIC base) and before MSRs whose validity depends on CR4/EFER, events last (they may inject).
 */
export function restoreVcpuState(vcpu: VcpuFd, state: VcpuState): void {
  vcpu.setMpState(state.mpState);
  vcpu.setRegs(state.regs);
  vcpu.setSregs(state.sregs);
  vcpu.setXsave(state.xsave);
  vcpu.setXcrs(state.xcrs);
  vcpu.setDebugRegs(state.debugRegs);
  vcpu.setLapic(state.lapic);
  vcpu.setMsrs(state.msrs);
  vcpu.setVcpuEvents(state.events);
}
