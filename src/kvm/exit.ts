// The kvm_run shared page (linux/kvm.h struct kvm_run) decoded into a typed exit union.
import { LAYOUT } from './structs.js';

/** KVM_EXIT_* reasons. */
export const EXIT = {
  UNKNOWN: 0, EXCEPTION: 1, IO: 2, HYPERCALL: 3, DEBUG: 4, HLT: 5, MMIO: 6, IRQ_WINDOW_OPEN: 7,
  SHUTDOWN: 8, FAIL_ENTRY: 9, INTR: 10, SET_TPR: 11, TPR_ACCESS: 12, NMI: 16, INTERNAL_ERROR: 17,
  SYSTEM_EVENT: 24,
} as const;

/** KVM_INTERNAL_ERROR_* sub-errors. */
export const INTERNAL_ERROR = { EMULATION: 1, SIMUL_EX: 2, DELIVERY_EV: 3, UNEXPECTED_EXIT_REASON: 4 } as const;

/** KVM_SYSTEM_EVENT_* types. */
export const SYSTEM_EVENT = { SHUTDOWN: 1, RESET: 2, CRASH: 3 } as const;

export type VcpuExit =
  /** Port I/O: `data` is a live view of the bytes in the run page (count × size bytes). */
  | { kind: 'io'; write: boolean; port: number; size: number; count: number; data: Uint8Array }
  /** MMIO: `data` is a live view of the 1–8 data bytes in the run page. */
  | { kind: 'mmio'; write: boolean; address: number; data: Uint8Array }
  | { kind: 'hlt' }
  | { kind: 'shutdown' }
  | { kind: 'intr' }
  | { kind: 'debug' }
  | { kind: 'fail-entry'; reason: bigint; cpu: number }
  | { kind: 'internal-error'; suberror: number; data: bigint[] }
  | { kind: 'system-event'; type: number; data: bigint[] }
  | { kind: 'unknown'; reason: number };

const U = LAYOUT.kvm_run.exit;

/** Decodes the exit described by the run page. `page` is the mmap'ed kvm_run of one vCPU. */
export function decodeExit(page: Uint8Array, v: DataView): VcpuExit {
  const reason = v.getUint32(LAYOUT.kvm_run.exit_reason, true);
  switch (reason) {
    case EXIT.IO: {
      const size = v.getUint8(U + 1);
      const count = v.getUint32(U + 4, true);
      const off = Number(v.getBigUint64(U + 8, true));
      // The data offset and length come from the kernel, but clamp them to the page anyway.
      const len = Math.min(size * count, Math.max(0, page.length - off));
      return { kind: 'io', write: v.getUint8(U) === 1, port: v.getUint16(U + 2, true), size, count,
        data: page.subarray(off, off + len) };
    }
    case EXIT.MMIO: {
      const len = Math.min(8, v.getUint32(U + 16, true));
      return { kind: 'mmio', write: v.getUint8(U + 20) !== 0, address: Number(v.getBigUint64(U, true)),
        data: page.subarray(U + 8, U + 8 + len) };
    }
    case EXIT.HLT: return { kind: 'hlt' };
    case EXIT.SHUTDOWN: return { kind: 'shutdown' };
    case EXIT.INTR: return { kind: 'intr' };
    case EXIT.DEBUG: return { kind: 'debug' };
    case EXIT.FAIL_ENTRY:
      return { kind: 'fail-entry', reason: v.getBigUint64(U, true), cpu: v.getUint32(U + 8, true) };
    case EXIT.INTERNAL_ERROR:
      return { kind: 'internal-error', suberror: v.getUint32(U, true), data: words(v, U + 4) };
    case EXIT.SYSTEM_EVENT:
      return { kind: 'system-event', type: v.getUint32(U, true), data: words(v, U + 4) };
    default:
      return { kind: 'unknown', reason };
  }
}

/** `u32 ndata; u64 data[16]` at `off` (the u64s start 4 bytes later, naturally aligned). */
function words(v: DataView, off: number): bigint[] {
  const n = Math.min(16, v.getUint32(off, true));
  return Array.from({ length: n }, (_, i) => v.getBigUint64(off + 4 + i * 8, true));
}
