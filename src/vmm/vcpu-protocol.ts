// Messages between the VM's main thread and its vCPU worker threads.
import type { MemoryRegion } from '../memory/guest-memory.js';
import type { LegacyDeviceState } from './legacy-devices.js';
import type { XsaveComponent } from '../arch/x86_64/assist/instruction-assist.js';

/** Why a VM ended, as reported by the vCPU that saw it. */
export type ExitReason = 'poweroff' | 'reset' | 'crash' | 'stopped';

/** What a vCPU worker needs to run: everything is plain data or shared memory. */
export interface VcpuWorkerData {
  index: number;
  vcpuFd: number;
  vmFd: number;
  mmapSize: number;
  /** Host address of the guest memory mapping (one mapping of the memfd, shared by all threads). */
  memoryAddr: number;
  memoryBytes: number;
  regions: MemoryRegion[];
  /** Shared state of the legacy devices (all threads touch them). */
  deviceState: LegacyDeviceState;
  /** Shared control words, see CONTROL. */
  control: SharedArrayBuffer;
  /** Kick signal: blocked in the worker, unblocked only inside KVM_RUN. */
  kickSignal: number;
  /** Whether to complete instructions KVM's emulator cannot (PVM hosts). */
  assist: boolean;
  /** XSAVE component offsets/sizes (CPUID leaf 0xD) for the assist's XSAVE/XRSTOR. */
  xsaveLayout: XsaveComponent[];
}

/** Int32 slots of the control SharedArrayBuffer. */
export const CONTROL = {
  /** Non-zero: every vCPU should leave its run loop. */
  STOP: 0,
  /** Count of assisted instructions, all vCPUs. */
  ASSISTS: 1,
  /** Count of exits, all vCPUs. */
  EXITS: 2,
  /** Generation counter of state-dump requests; each vCPU answers every new one once. */
  DUMP: 3,
  /** Non-zero: every vCPU should park outside KVM_RUN until it is zero again. */
  PAUSE: 4,
  /** How many vCPUs are parked (each adds itself when it parks and removes itself on resume). */
  PAUSED: 5,
  SLOTS: 8,
} as const;

export type WorkerMessage =
  | { type: 'ready'; tid: number }
  | { type: 'output'; bytes: Uint8Array }
  | { type: 'exit'; reason: ExitReason; detail: string }
  | { type: 'assist'; kind: string }
  | { type: 'dump'; text: string }
  | { type: 'error'; message: string };
