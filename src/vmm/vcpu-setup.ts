// Puts a freshly created vCPU into the state a Linux boot entry expects (CPUID, MSRs, registers, FPU, LAPIC).
import type { VcpuFd } from '../kvm/kvm.js';
import { zeroRegs, type Regs, type Sregs } from '../kvm/structs.js';
import { filterCpuid } from '../arch/x86_64/cpuid.js';
import { bootMsrs } from '../arch/x86_64/msrs.js';
import type { Machine } from './machine.js';
import type { LinuxBoot } from './linux-loader.js';

/** LAPIC register offsets in struct kvm_lapic_state, and LVT delivery modes. */
const APIC_LVT_LINT0 = 0x350;
const APIC_LVT_LINT1 = 0x360;
const APIC_MODE_EXTINT = 0x7 << 8;
const APIC_MODE_NMI = 0x4 << 8;

export function setupVcpuForBoot(machine: Machine, vcpu: VcpuFd, index: number, boot: LinuxBoot): void {
  vcpu.setCpuid(filterCpuid(machine.kvm.supportedCpuid(), {
    vcpuIndex: index, vcpuCount: machine.vcpus.length, noHypercalls: machine.options.assist,
  }));
  vcpu.setMsrs(bootMsrs());
  setupLapic(vcpu);
  if (index === 0) {
    vcpu.setSregs(applySregs(vcpu.getSregs(), boot.sregs));
    vcpu.setRegs(applyRegs(boot.regs));
  }
}

/** LINT0 delivers the legacy PIC's ExtINT, LINT1 NMIs — what a PC's BIOS leaves for the kernel. */
function setupLapic(vcpu: VcpuFd): void {
  const lapic = vcpu.getLapic();
  const v = new DataView(lapic.buffer);
  v.setUint32(APIC_LVT_LINT0, (v.getUint32(APIC_LVT_LINT0, true) & ~0x700) | APIC_MODE_EXTINT, true);
  v.setUint32(APIC_LVT_LINT1, (v.getUint32(APIC_LVT_LINT1, true) & ~0x700) | APIC_MODE_NMI, true);
  vcpu.setLapic(lapic);
}

function applyRegs(partial: Partial<Regs>): Regs {
  const regs = zeroRegs();
  regs.rflags = 2n;
  for (const [k, v] of Object.entries(partial) as [keyof Regs, bigint | undefined][]) if (v !== undefined) regs[k] = v;
  return regs;
}

function applySregs(current: Sregs, boot: Omit<Sregs, 'cr2' | 'cr8' | 'apic_base' | 'interrupt_bitmap'>): Sregs {
  return { ...current, ...boot };
}
