// KVM ioctl request numbers (linux/kvm.h), computed with the asm-generic _IOC encoding.

const IOC_NONE = 0;
const IOC_WRITE = 1;
const IOC_READ = 2;
const KVMIO = 0xae;

function ioc(dir: number, nr: number, size: number): number {
  // dir occupies bits 30-31, so the result can exceed 2^31: build it without 32-bit bit ops.
  return dir * 2 ** 30 + size * 2 ** 16 + KVMIO * 2 ** 8 + nr;
}
const io = (nr: number): number => ioc(IOC_NONE, nr, 0);
const ior = (nr: number, size: number): number => ioc(IOC_READ, nr, size);
const iow = (nr: number, size: number): number => ioc(IOC_WRITE, nr, size);
const iowr = (nr: number, size: number): number => ioc(IOC_READ | IOC_WRITE, nr, size);

/** Every KVM ioctl Typevisor issues, by its uapi name. */
export const KVM = {
  GET_API_VERSION: io(0x00),
  CREATE_VM: io(0x01),
  GET_MSR_INDEX_LIST: iowr(0x02, 4),
  CHECK_EXTENSION: io(0x03),
  GET_VCPU_MMAP_SIZE: io(0x04),
  GET_SUPPORTED_CPUID: iowr(0x05, 8),
  CREATE_VCPU: io(0x41),
  GET_DIRTY_LOG: iow(0x42, 16),
  SET_USER_MEMORY_REGION: iow(0x46, 32),
  SET_TSS_ADDR: io(0x47),
  SET_IDENTITY_MAP_ADDR: iow(0x48, 8),
  CREATE_IRQCHIP: io(0x60),
  IRQ_LINE: iow(0x61, 8),
  SET_GSI_ROUTING: iow(0x6a, 8),
  IRQFD: iow(0x76, 32),
  CREATE_PIT2: iow(0x77, 64),
  IOEVENTFD: iow(0x79, 64),
  SET_CLOCK: iow(0x7b, 48),
  GET_CLOCK: ior(0x7c, 48),
  SIGNAL_MSI: iow(0xa5, 32),
  RUN: io(0x80),
  GET_REGS: ior(0x81, 144),
  SET_REGS: iow(0x82, 144),
  GET_SREGS: ior(0x83, 312),
  SET_SREGS: iow(0x84, 312),
  GET_MSRS: iowr(0x88, 8),
  SET_MSRS: iow(0x89, 8),
  SET_SIGNAL_MASK: iow(0x8b, 4),
  GET_FPU: ior(0x8c, 416),
  SET_FPU: iow(0x8d, 416),
  GET_LAPIC: ior(0x8e, 1024),
  SET_LAPIC: iow(0x8f, 1024),
  SET_CPUID2: iow(0x90, 8),
  GET_CPUID2: iowr(0x91, 8),
  GET_MP_STATE: ior(0x98, 4),
  SET_MP_STATE: iow(0x99, 4),
  SET_GUEST_DEBUG: iow(0x9b, 72),
  GET_VCPU_EVENTS: ior(0x9f, 64),
  SET_VCPU_EVENTS: iow(0xa0, 64),
  GET_DEBUGREGS: ior(0xa1, 128),
  SET_DEBUGREGS: iow(0xa2, 128),
  SET_TSC_KHZ: io(0xa2),
  GET_TSC_KHZ: io(0xa3),
  GET_XSAVE: ior(0xa4, 4096),
  SET_XSAVE: iow(0xa5, 4096),
  GET_XCRS: ior(0xa6, 392),
  SET_XCRS: iow(0xa7, 392),
  KVMCLOCK_CTRL: io(0xad),
} as const;

export type KvmIoctlName = keyof typeof KVM;

/** KVM_CAP_* numbers we check. */
export const KVM_CAP = {
  IRQCHIP: 0,
  HLT: 1,
  USER_MEMORY: 3,
  SET_TSS_ADDR: 4,
  EXT_CPUID: 7,
  PIT2: 33,
  IRQFD: 32,
  IOEVENTFD: 36,
  ADJUST_CLOCK: 39,
  VCPU_EVENTS: 41,
  XSAVE: 55,
  XCRS: 56,
  IMMEDIATE_EXIT: 136,
  NR_VCPUS: 9,
  MAX_VCPUS: 66,
  SIGNAL_MSI: 77,
  IRQ_ROUTING: 25,
  TSC_DEADLINE_TIMER: 72,
} as const;
