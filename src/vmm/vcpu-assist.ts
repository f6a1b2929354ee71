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

export class VcpuAssist {
  private readonly assist: InstructionAssist;
  private readonly port: AssistVcpu;

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

  handle(): AssistOutcome {
    return this.assist.handle(this.port);
  }
}
