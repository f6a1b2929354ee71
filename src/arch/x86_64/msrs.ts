// Model-specific registers a vCPU starts with for a Linux boot (Intel SDM vol. 4 "Model-Specific Registers"; the set Firecracker and QEMU reset).
import type { MsrEntry } from '../../kvm/structs.js';

export const MSR = {
  IA32_SYSENTER_CS: 0x174,
  IA32_SYSENTER_ESP: 0x175,
  IA32_SYSENTER_EIP: 0x176,
  IA32_MISC_ENABLE: 0x1a0,
  IA32_MTRR_DEF_TYPE: 0x2ff,
  STAR: 0xc0000081,
  LSTAR: 0xc0000082,
  CSTAR: 0xc0000083,
  SYSCALL_MASK: 0xc0000084,
  KERNEL_GS_BASE: 0xc0000102,
} as const;

/** IA32_MISC_ENABLE bit 0: fast-string operations (rep movs/stos) enabled, as firmware leaves it. */
const MISC_ENABLE_FAST_STRING = 1n;
/** IA32_MTRR_DEF_TYPE: MTRRs enabled (bit 11), default type write-back (6) — uncached RAM would crawl. */
const MTRR_ENABLE_WB = (1n << 11n) | 6n;

/**
 * The boot values: system-call MSRs cleared (the kernel programs them; stale values from a
 * previous boot must not survive a reset), fast strings and write-back MTRRs on. The TSC is
 * left to KVM, which starts it at zero and keeps vCPUs in step.
 */
export function bootMsrs(): MsrEntry[] {
  return [
    { index: MSR.IA32_SYSENTER_CS, data: 0n },
    { index: MSR.IA32_SYSENTER_ESP, data: 0n },
    { index: MSR.IA32_SYSENTER_EIP, data: 0n },
    { index: MSR.STAR, data: 0n },
    { index: MSR.CSTAR, data: 0n },
    { index: MSR.KERNEL_GS_BASE, data: 0n },
    { index: MSR.SYSCALL_MASK, data: 0n },
    { index: MSR.LSTAR, data: 0n },
    { index: MSR.IA32_MISC_ENABLE, data: MISC_ENABLE_FAST_STRING },
    { index: MSR.IA32_MTRR_DEF_TYPE, data: MTRR_ENABLE_WB },
  ];
}
