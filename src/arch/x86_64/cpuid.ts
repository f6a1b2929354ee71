// Per-vCPU CPUID from KVM_GET_SUPPORTED_CPUID (Intel SDM vol. 2A "CPUID"; AMD APM vol. 3 appendix E).
import type { CpuidEntry } from '../../kvm/structs.js';

export interface CpuidOptions {
  vcpuIndex: number;
  vcpuCount: number;
  /**
   * Hide the KVM paravirtual features that work through hypercalls: on nested PVM hosts a
   * guest's VMCALL can loop forever (KVM cannot patch it to VMMCALL in read-only kernel text).
   */
  noHypercalls?: boolean;
}

/** KVM_FEATURE_* bits of leaf 0x40000001 EAX that make the guest issue hypercalls. */
const KVM_HYPERCALL_FEATURES = (1 << 7) | (1 << 11) | (1 << 13) | (1 << 16); // PV_UNHALT, PV_SEND_IPI, PV_SCHED_YIELD, HC_MAP_GPA_RANGE

const LEAF1_ECX_HYPERVISOR = 1 << 31;
const LEAF1_EDX_HTT = 1 << 28;
/** "KVMKVMKVM\0\0\0": guests then use kvmclock and the other KVM paravirtual features. */
const KVM_SIGNATURE = { ebx: 0x4b4d564b, ecx: 0x564b4d56, edx: 0x0000004d };

const bitsFor = (n: number): number => (n <= 1 ? 0 : Math.ceil(Math.log2(n)));

/**
 * The CPUID table of one vCPU: what KVM supports, with this vCPU's APIC ID and a topology of
 * `vcpuCount` single-threaded cores in one package, and the hypervisor bit and leaves set.
 */
export function filterCpuid(supported: readonly CpuidEntry[], opts: CpuidOptions): CpuidEntry[] {
  const apicId = opts.vcpuIndex;
  const count = opts.vcpuCount;
  const out: CpuidEntry[] = [];
  for (const e0 of supported) {
    const e = { ...e0 };
    switch (e.function) {
      case 0x1:
        e.ebx = ((e.ebx & 0x0000ffff) | ((count & 0xff) << 16) | ((apicId & 0xff) << 24)) >>> 0;
        e.ecx = (e.ecx | LEAF1_ECX_HYPERVISOR) >>> 0;
        e.edx = (count > 1 ? e.edx | LEAF1_EDX_HTT : e.edx & ~LEAF1_EDX_HTT) >>> 0;
        break;
      case 0x4:
        // Cache descriptors: cores sharing the package (EAX[31:26]) and threads sharing the cache (EAX[25:14]).
        e.eax = ((e.eax & 0x3fff) | ((count - 1) << 26)) >>> 0;
        break;
      case 0xb:
      case 0x1f:
        Object.assign(e, topologyLeaf(e.index, apicId, count));
        break;
      case 0x40000000:
        Object.assign(e, { eax: Math.max(e.eax, 0x40000001), ...KVM_SIGNATURE });
        break;
      case 0x40000001:
        if (opts.noHypercalls) e.eax = (e.eax & ~KVM_HYPERCALL_FEATURES) >>> 0;
        break;
      case 0x80000008:
        // AMD: number of cores in the package minus one, and the APIC ID bits they need.
        e.ecx = ((e.ecx & ~0xf0ff) | (bitsFor(count) << 12) | (count - 1)) >>> 0;
        break;
      default:
        break;
    }
    out.push(e);
  }
  if (!out.some((e) => e.function === 0x40000000)) {
    out.push({ function: 0x40000000, index: 0, flags: 0, eax: 0x40000001, ...KVM_SIGNATURE });
  }
  return out;
}

/** Extended topology (leaf 0xB/0x1F) subleaf: level 0 = SMT (1 thread), level 1 = core (`count` cores). */
function topologyLeaf(subleaf: number, apicId: number, count: number): Pick<CpuidEntry, 'eax' | 'ebx' | 'ecx' | 'edx'> {
  if (subleaf === 0) return { eax: 0, ebx: 1, ecx: (1 << 8) | 0, edx: apicId };
  if (subleaf === 1) return { eax: bitsFor(count), ebx: count, ecx: (2 << 8) | 1, edx: apicId };
  return { eax: 0, ebx: 0, ecx: subleaf & 0xff, edx: apicId };
}
