// Connects the instruction assist to a KVM vCPU: register/FPU/XSAVE access and exception injection.
import type { VcpuFd } from '../kvm/kvm.js';
import type { GuestMemory } from '../memory/guest-memory.js';
import type { CpuidEntry } from '../kvm/structs.js';
import { InstructionAssist, type AssistOutcome, type AssistVcpu, type XsaveComponent } from '../arch/x86_64/assist/instruction-assist.js';

/** XSAVE component offsets and sizes from CPUID leaf 0xD (subleaf i ≥ 2: EAX = size, EBX = offset). */
export function xsaveLayout(cpuid: readonly CpuidEntry[]): XsaveComponent[] {
  return cpuid.filter((e) => e.function === 0xd && e.index >= 2 && e.index < 63 && e.eax > 0)
    .map((e) => ({ component: e.index, offset: e.ebx, size: e.eax }));
}

/**
 * An instruction the assist cannot complete gets one more try before it is fatal: another vCPU may
 * have rewritten it between KVM's failed emulation and our read of it (Linux's text_poke_bp()
 * replaces its temporary int3 with the final jump while this vCPU is exiting on the int3: we then
 * read `eb 38`, a jump KVM runs fine). Re-entering the guest at the same RIP runs whatever is
 * there now; the same failure twice in a row is real.
 */
export class RetryOnce {
  private last: string | undefined;

  /** Whether failure `report` (instruction bytes and RIP) should be retried rather than be fatal. */
  retry(report: string): boolean {
    const again = this.last === report;
    this.last = again ? undefined : report;
    return !again;
  }

  /** An instruction was completed: whatever failed before was not the same one failing again. */
  reset(): void {
    this.last = undefined;
  }
}

export class VcpuAssist {
  private readonly assist: InstructionAssist;
  private readonly port: AssistVcpu;
  private readonly retries = new RetryOnce();

  constructor(vcpu: VcpuFd, memory: GuestMemory, layout: readonly XsaveComponent[] = []) {
    this.assist = new InstructionAssist(memory, layout);
    this.port = {
      getRegs: () => vcpu.getRegs(),
      setRegs: (r) => vcpu.setRegs(r),
      getSregs: () => vcpu.getSregs(),
      getXsave: () => vcpu.getXsave(),
      setXsave: (a) => vcpu.setXsave(a),
      getXcr0: () => vcpu.getXcrs().find((x) => x.xcr === 0)?.value ?? 1n,
      injectException: (vector, errorCode) => {
        const events = vcpu.getVcpuEvents();
        events.exception = {
          injected: 1, nr: vector, hasErrorCode: errorCode === undefined ? 0 : 1, pending: 0, errorCode: errorCode ?? 0,
        };
        vcpu.setVcpuEvents(events);
      },
    };
  }

  /** Completes the instruction KVM could not; `retry` when it is worth re-entering the guest as it is (see RetryOnce). */
  handle(): AssistOutcome {
    const outcome = this.assist.handle(this.port);
    if (outcome.handled) {
      this.retries.reset();
      return outcome;
    }
    return this.retries.retry(outcome.report) ? { handled: true, kind: 'retry' } : outcome;
  }
}
