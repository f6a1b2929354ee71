// Errors with stable codes: every failure the user or a caller can act on is a TypevisorError.

/** Stable machine-readable error codes. Add new ones; never rename existing ones. */
export type ErrorCode =
  | 'KVM_UNAVAILABLE'
  | 'KVM_PERMISSION'
  | 'KVM_API_VERSION'
  | 'SYSCALL_FAILED'
  | 'INVALID_ARGUMENT'
  | 'KERNEL_UNREADABLE'
  | 'KERNEL_FORMAT'
  | 'INITRD_UNREADABLE'
  | 'INITRD_TOO_LARGE'
  | 'MEMORY_TOO_LARGE'
  | 'GUEST_MEMORY_FAULT'
  | 'VM_STATE'
  | 'VCPU_FAILED'
  | 'ASSIST_UNSUPPORTED'
  | 'GUEST_BUILD_FAILED'
  | 'AGENT_UNAVAILABLE'
  | 'AGENT_FAILED'
  | 'TIMEOUT'
  | 'NOT_FOUND'
  | 'INTERNAL';

export interface TypevisorErrorOptions {
  cause?: unknown;
  /** errno of the failed system call, when one failed. */
  errno?: number;
  /** Name of the failed system call or ioctl (e.g. `KVM_CREATE_VM`). */
  syscall?: string;
}

export class TypevisorError extends Error {
  readonly code: ErrorCode;
  readonly errno: number | undefined;
  readonly syscall: string | undefined;

  constructor(code: ErrorCode, message: string, options: TypevisorErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'TypevisorError';
    this.code = code;
    this.errno = options.errno;
    this.syscall = options.syscall;
  }
}

/** Throws INVALID_ARGUMENT unless `cond` holds; for checks on caller-supplied values. */
export function check(cond: boolean, message: string): asserts cond {
  if (!cond) throw new TypevisorError('INVALID_ARGUMENT', message);
}
