// Per-vCPU CPUID from KVM_GET_SUPPORTED_CPUID (Intel SDM vol. 2A "CPUID", AMD APM vol. 3 appendix E; normalized like Firecracker's cpuid-normalization.md).
import { TypevisorError } from '../../base/errors.js';
import type { CpuidEntry } from '../../kvm/structs.js';

/** One feature bit to hide from the guest; without `index`, in every subleaf of `function`. */
export interface CpuidBit {
  function: number;
  index?: number;
  register: 'eax' | 'ebx' | 'ecx' | 'edx';
  bit: number;
}

export interface CpuidOptions {
  vcpuIndex: number;
  vcpuCount: number;
  /**
   * Hide the KVM paravirtual features that work through hypercalls: on nested PVM hosts a
   * guest's VMCALL can loop forever (KVM cannot patch it to VMMCALL in read-only kernel text).
   */
  noHypercalls?: boolean;
  /**
   * KVM_CAP_TSC_DEADLINE_TIMER: the in-kernel LAPIC emulates TSC-deadline mode. Upstream KVM
   * leaves that bit out of KVM_GET_SUPPORTED_CPUID, so the VMM sets it when the capability says
   * so (as QEMU and Firecracker do); without this option the bit is passed through as reported.
   */
  tscDeadline?: boolean;
  /** Feature bits to clear (e.g. what a host that cannot emulate an instruction needs hidden). */
  hide?: readonly CpuidBit[];
}

/** KVM_FEATURE_* bits of leaf 0x40000001 EAX that make the guest issue hypercalls. */
const KVM_HYPERCALL_FEATURES = (1 << 7) | (1 << 11) | (1 << 13) | (1 << 16); // PV_UNHALT, PV_SEND_IPI, PV_SCHED_YIELD, HC_MAP_GPA_RANGE

const LEAF1_ECX_PDCM = 1 << 15;
const LEAF1_ECX_TSC_DEADLINE = 1 << 24;
const LEAF1_ECX_HYPERVISOR = 1 << 31;
const LEAF1_EDX_HTT = 1 << 28;
/** CLFLUSH line size in 8-byte units: 64-byte lines. */
const CLFLUSH_LINE = 8;
const LEAF6_EAX_TURBO = 1 << 1;
const LEAF6_ECX_EPB = 1 << 3;
const LEAF7_EDX_ARCH_CAPABILITIES = 1 << 29;
/** "KVMKVMKVM\0\0\0": guests then use kvmclock and the other KVM paravirtual features. */
const KVM_SIGNATURE = { ebx: 0x4b4d564b, ecx: 0x564b4d56, edx: 0x0000004d };
/** Leaf 0 EBX of "AuthenticAMD" and "HygonGenuine": the vendors with AMD's topology leaves. */
const AMD_LIKE_EBX = new Set([0x68747541, 0x6f677948]);
/** xAPIC IDs are 8 bits and every vCPU's APIC ID is its index. */
const MAX_VCPUS = 255;
/** KVM_CPUID_FLAG_SIGNIFCANT_INDEX (sic): the entry depends on ECX. */
const SIGNIFICANT_INDEX = 1;

const bitsFor = (n: number): number => (n <= 1 ? 0 : Math.ceil(Math.log2(n)));

/**
 * The CPUID table of one vCPU: what KVM supports, with this vCPU's APIC ID, a topology of
 * `vcpuCount` single-threaded cores in one package, the hypervisor bit and leaves, and the
 * features a VM cannot use (performance monitoring, turbo, energy bias) hidden. Pure: the input
 * is not modified.
 */
export function filterCpuid(supported: readonly CpuidEntry[], opts: CpuidOptions): CpuidEntry[] {
  const { vcpuIndex: apicId, vcpuCount: count } = opts;
  if (!Number.isInteger(count) || count < 1 || count > MAX_VCPUS || !Number.isInteger(apicId) || apicId < 0 || apicId >= count) {
    throw new TypevisorError('INVALID_ARGUMENT', `vCPU ${apicId} of ${count}: the count must be 1..${MAX_VCPUS} and the index below it`);
  }
  const amd = AMD_LIKE_EBX.has(supported.find((e) => e.function === 0)?.ebx ?? 0);
  const out: CpuidEntry[] = [];
  for (const e0 of supported) {
    const e = { ...e0 };
    switch (e.function) {
      case 0x1:
        // EBX: brand index kept; CLFLUSH size; addressable logical IDs per package (a power of two); initial APIC ID.
        e.ebx = ((e.ebx & 0xff) | (CLFLUSH_LINE << 8) | (Math.min(2 ** bitsFor(count), 0xff) << 16) | (apicId << 24)) >>> 0;
        // PDCM advertises IA32_PERF_CAPABILITIES, part of the PMU we hide.
        e.ecx = (e.ecx & ~LEAF1_ECX_PDCM) | LEAF1_ECX_HYPERVISOR;
        if (opts.tscDeadline) e.ecx |= LEAF1_ECX_TSC_DEADLINE;
        e.ecx >>>= 0;
        e.edx = (count > 1 ? e.edx | LEAF1_EDX_HTT : e.edx & ~LEAF1_EDX_HTT) >>> 0;
        break;
      case 0x4:
        // Intel deterministic cache parameters.
        e.eax = cacheSharing(e.eax, count, true);
        break;
      case 0x6:
        // The guest cannot drive the host's frequency.
        e.eax = (e.eax & ~LEAF6_EAX_TURBO) >>> 0;
        e.ecx = (e.ecx & ~LEAF6_ECX_EPB) >>> 0;
        break;
      case 0x7:
        // AMD CPUs have no IA32_ARCH_CAPABILITIES; KVM's emulated one would vouch for speculation safety it cannot know.
        if (amd && e.index === 0) e.edx = (e.edx & ~LEAF7_EDX_ARCH_CAPABILITIES) >>> 0;
        break;
      case 0xa:
        // No virtual PMU: perf counters would exit to KVM on every access and mislead the guest's profilers.
        Object.assign(e, { eax: 0, ebx: 0, ecx: 0, edx: 0 });
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
        // AMD: cores in the package minus one (7:0) and the APIC ID bits they need (15:12).
        if (amd) e.ecx = ((e.ecx & ~0xf0ff) | (bitsFor(count) << 12) | (count - 1)) >>> 0;
        break;
      case 0x8000001d:
        if (amd) e.eax = cacheSharing(e.eax, count, false);
        break;
      case 0x8000001e:
        // AMD extended APIC ID; compute unit = the core (one thread each); node 0 of 1.
        if (amd) Object.assign(e, { eax: apicId, ebx: apicId & 0xff, ecx: 0 });
        break;
      default:
        break;
    }
    out.push(e);
  }
  if (!out.some((e) => e.function === 0x40000000)) {
    out.push({ function: 0x40000000, index: 0, flags: 0, eax: 0x40000001, ...KVM_SIGNATURE });
  }
  // Linux reads the core level of leaf 0xB whenever the leaf exists; make sure both levels do.
  if (out.some((e) => e.function === 0xb)) {
    for (const index of [0, 1]) {
      if (!out.some((e) => e.function === 0xb && e.index === index)) {
        out.push({ function: 0xb, index, flags: SIGNIFICANT_INDEX, ...topologyLeaf(index, apicId, count) });
      }
    }
  }
  for (const h of opts.hide ?? []) {
    for (const e of out) {
      if (e.function === h.function && (h.index === undefined || e.index === h.index)) e[h.register] = (e[h.register] & ~(1 << h.bit)) >>> 0;
    }
  }
  return out;
}

/**
 * Cache descriptor EAX (Intel leaf 4, AMD leaf 0x8000001D): threads sharing the cache minus one
 * (25:14) — one per core for L1/L2, the whole package for L3 — and, on Intel, cores in the
 * package minus one (31:26). Null descriptors (type 0) end the list and stay as they are.
 */
function cacheSharing(eax: number, count: number, withCores: boolean): number {
  if ((eax & 0x1f) === 0) return eax;
  const level = (eax >>> 5) & 0x7;
  const sharing = level >= 3 ? Math.min(count - 1, 0xfff) : 0;
  const cores = withCores ? Math.min(count - 1, 63) << 26 : eax & 0xfc000000;
  return ((eax & 0x3fff) | (sharing << 14) | cores) >>> 0;
}

/** Extended topology (leaf 0xB/0x1F) subleaf: level 0 = SMT (1 thread), level 1 = core (`count` cores). */
function topologyLeaf(subleaf: number, apicId: number, count: number): Pick<CpuidEntry, 'eax' | 'ebx' | 'ecx' | 'edx'> {
  if (subleaf === 0) return { eax: 0, ebx: 1, ecx: (1 << 8) | 0, edx: apicId };
  if (subleaf === 1) return { eax: bitsFor(count), ebx: count, ecx: (2 << 8) | 1, edx: apicId };
  return { eax: 0, ebx: 0, ecx: subleaf & 0xff, edx: apicId };
}
