// The libc calls Typevisor makes, bound through koffi (only src/sys and src/kvm load native code).
import koffi from 'koffi';
import { TypevisorError } from '../base/errors.js';

const libc = koffi.load('libc.so.6');

/** Raw bindings: return values are unchecked; use the wrappers below. */
const raw = {
  open: libc.func('int open(const char *path, int flags, int mode)') as (p: string, f: number, m: number) => number,
  close: libc.func('int close(int fd)') as (fd: number) => number,
  ioctlPtr: libc.func('int ioctl(int fd, unsigned long req, _Inout_ uint8_t *arg)') as (
    fd: number, req: number, arg: Uint8Array | null) => number,
  ioctlInt: libc.func('ioctl', 'int', ['int', 'unsigned long', 'unsigned long']) as (
    fd: number, req: number, arg: number) => number,
  mmap: libc.func('uintptr_t mmap(uintptr_t addr, size_t len, int prot, int flags, int fd, long off)') as (
    addr: number, len: number, prot: number, flags: number, fd: number, off: number) => number,
  munmap: libc.func('int munmap(uintptr_t addr, size_t len)') as (addr: number, len: number) => number,
  madvise: libc.func('int madvise(uintptr_t addr, size_t len, int advice)') as (
    addr: number, len: number, advice: number) => number,
  memfdCreate: libc.func('int memfd_create(const char *name, unsigned int flags)') as (n: string, f: number) => number,
  ftruncate: libc.func('int ftruncate(int fd, long len)') as (fd: number, len: number) => number,
  eventfd: libc.func('int eventfd(unsigned int initval, int flags)') as (v: number, f: number) => number,
  read: libc.func('long read(int fd, _Out_ uint8_t *buf, size_t n)') as (fd: number, b: Uint8Array, n: number) => number,
  write: libc.func('long write(int fd, const uint8_t *buf, size_t n)') as (fd: number, b: Uint8Array, n: number) => number,
  gettid: libc.func('int gettid()') as () => number,
  getpid: libc.func('int getpid()') as () => number,
  tgkill: libc.func('int tgkill(int tgid, int tid, int sig)') as (tgid: number, tid: number, sig: number) => number,
  pthreadSigmask: libc.func('int pthread_sigmask(int how, const uint8_t *set, _Out_ uint8_t *old)') as (
    how: number, set: Uint8Array, old: Uint8Array | null) => number,
  sigtimedwait: libc.func('int sigtimedwait(const uint8_t *set, _Out_ uint8_t *info, const uint8_t *timeout)') as (
    set: Uint8Array, info: Uint8Array | null, timeout: Uint8Array) => number,
  strerror: libc.func('const char *strerror(int errnum)') as (e: number) => string,
  epollCreate1: libc.func('int epoll_create1(int flags)') as (flags: number) => number,
  epollCtl: libc.func('int epoll_ctl(int epfd, int op, int fd, uint8_t *event)') as (epfd: number, op: number, fd: number, ev: Uint8Array) => number,
  epollWait: libc.func('int epoll_wait(int epfd, _Out_ uint8_t *events, int max, int timeout)') as (epfd: number, ev: Uint8Array, max: number, timeout: number) => number,
  flock: libc.func('int flock(int fd, int op)') as (fd: number, op: number) => number,
  preadv: libc.func('long preadv(int fd, const uint8_t *iov, int iovcnt, long offset)') as (fd: number, iov: Uint8Array, n: number, off: number) => number,
  pwritev: libc.func('long pwritev(int fd, const uint8_t *iov, int iovcnt, long offset)') as (fd: number, iov: Uint8Array, n: number, off: number) => number,
  writev: libc.func('long writev(int fd, const uint8_t *iov, int iovcnt)') as (fd: number, iov: Uint8Array, n: number) => number,
  fallocate: libc.func('int fallocate(int fd, int mode, long offset, long len)') as (fd: number, mode: number, off: number, len: number) => number,
  clockGettime: libc.func('int clock_gettime(int clock, _Out_ uint8_t *ts)') as (clock: number, ts: Uint8Array) => number,
};

export const O_RDONLY = 0;
export const O_RDWR = 2;
export const O_CLOEXEC = 0o2000000;
export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 1;
export const MAP_PRIVATE = 2;
export const MAP_ANONYMOUS = 0x20;
export const MAP_NORESERVE = 0x4000;
export const MFD_CLOEXEC = 1;
export const EFD_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;
export const MADV_DONTNEED = 4;
export const MADV_HUGEPAGE = 14;
export const EINTR = 4;
export const EWOULDBLOCK = 11;
export const EOPNOTSUPP = 95;
export const EPOLLIN = 1;
const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_MOD = 3;
const EPOLL_CLOEXEC = 0o2000000;
/** struct epoll_event is packed on x86-64: u32 events, u64 data. */
const EPOLL_EVENT_BYTES = 12;
export const LOCK_SH = 1;
export const LOCK_EX = 2;
export const LOCK_NB = 4;
export const FALLOC_FL_KEEP_SIZE = 1;
export const FALLOC_FL_PUNCH_HOLE = 2;
export const FALLOC_FL_ZERO_RANGE = 0x10;
export const EAGAIN = 11;
export const SIG_BLOCK = 0;
const MAP_FAILED = 2 ** 64 - 1;

/** Symbolic errno names for messages (the common ones a VMM meets). */
const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM', 2: 'ENOENT', 4: 'EINTR', 5: 'EIO', 9: 'EBADF', 11: 'EAGAIN', 12: 'ENOMEM', 13: 'EACCES',
  14: 'EFAULT', 16: 'EBUSY', 17: 'EEXIST', 19: 'ENODEV', 22: 'EINVAL', 24: 'EMFILE', 25: 'ENOTTY', 28: 'ENOSPC',
  95: 'EOPNOTSUPP',
};

export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `errno ${errno}`;
}

/** A TypevisorError for a failed call, naming it and the errno (`KVM_RUN failed: EINVAL (Invalid argument)`). */
export function syscallError(name: string, errno: number, hint = ''): TypevisorError {
  const msg = `${name} failed: ${errnoName(errno)} (${raw.strerror(errno)})${hint ? ` — ${hint}` : ''}`;
  return new TypevisorError('SYSCALL_FAILED', msg, { errno, syscall: name });
}

/** Runs a call returning -1 on failure; throws a SYSCALL_FAILED error carrying errno and `name`. */
function checked(name: string, result: number): number {
  if (result === -1) throw syscallError(name, koffi.errno());
  return result;
}

export function errno(): number {
  return koffi.errno();
}

export function open(path: string, flags: number, mode = 0): number {
  const fd = raw.open(path, flags | O_CLOEXEC, mode);
  if (fd === -1) throw syscallError(`open(${path})`, koffi.errno());
  return fd;
}

export function close(fd: number): void {
  raw.close(fd);
}

/** ioctl with a pointer argument (a struct buffer, in/out), or null. Throws with the ioctl's name. */
export function ioctl(fd: number, request: number, arg: Uint8Array | null, name: string): number {
  return checked(name, raw.ioctlPtr(fd, request, arg));
}

/** ioctl with an integer argument. */
export function ioctlValue(fd: number, request: number, arg: number, name: string): number {
  return checked(name, raw.ioctlInt(fd, request, arg));
}

/** ioctl returning -errno instead of throwing, for hot paths that handle EINTR/EAGAIN themselves. */
export function ioctlRaw(fd: number, request: number, arg: number): number {
  const r = raw.ioctlInt(fd, request, arg);
  return r === -1 ? -koffi.errno() : r;
}

export function mmap(len: number, prot: number, flags: number, fd: number, offset = 0, name = 'mmap'): number {
  const addr = raw.mmap(0, len, prot, flags, fd, offset);
  if (addr === MAP_FAILED || addr === -1) throw syscallError(name, koffi.errno());
  return addr;
}

export function munmap(addr: number, len: number): void {
  checked('munmap', raw.munmap(addr, len));
}

export function madvise(addr: number, len: number, advice: number): void {
  checked('madvise', raw.madvise(addr, len, advice));
}

/** Host addresses of the buffers hostView made, so views into them can be handed to vectored I/O. */
const hostViewAddresses = new WeakMap<ArrayBuffer, number>();

/** A zero-copy ArrayBuffer over host memory at `addr` (an mmap'ed range this process owns). */
export function hostView(addr: number, len: number): ArrayBuffer {
  const buffer = koffi.view(addr, len);
  hostViewAddresses.set(buffer, addr);
  return buffer;
}

/** The host address of a view into a hostView buffer; undefined for ordinary JS memory. */
export function hostAddressOf(view: Uint8Array): number | undefined {
  const base = hostViewAddresses.get(view.buffer as ArrayBuffer);
  return base === undefined ? undefined : base + view.byteOffset;
}

/** Bytes of one struct iovec (void *base, size_t len). */
export const IOVEC_BYTES = 16;

/** preadv(2) into the `count` iovecs in `iov`; returns bytes read (short at end of file). Retries EINTR. */
export function preadv(fd: number, iov: Uint8Array, count: number, offset: number): number {
  for (;;) {
    const n = raw.preadv(fd, iov, count, offset);
    if (n >= 0) return n;
    if (errno() !== EINTR) throw syscallError('preadv', errno());
  }
}

/** pwritev(2) from the `count` iovecs in `iov`; returns bytes written (may be short). Retries EINTR. */
export function pwritev(fd: number, iov: Uint8Array, count: number, offset: number): number {
  for (;;) {
    const n = raw.pwritev(fd, iov, count, offset);
    if (n >= 0) return n;
    if (errno() !== EINTR) throw syscallError('pwritev', errno());
  }
}

export function epollCreate(): number {
  return checked('epoll_create1', raw.epollCreate1(EPOLL_CLOEXEC));
}

/** Watches `fd` for input; `data` comes back with its events. */
export function epollAdd(epfd: number, fd: number, data: number): void {
  const ev = new Uint8Array(EPOLL_EVENT_BYTES);
  const v = new DataView(ev.buffer);
  v.setUint32(0, EPOLLIN, true);
  v.setBigUint64(4, BigInt(data), true);
  checked('epoll_ctl', raw.epollCtl(epfd, EPOLL_CTL_ADD, fd, ev));
}

/** Waits up to `timeoutMs` for input; returns the `data` of each ready fd (empty on timeout or EINTR). */
/** Re-arms (`wanted`) or disarms an fd already in the set, keeping its data. */
export function epollSetInterest(epfd: number, fd: number, data: number, wanted: boolean): void {
  const ev = new Uint8Array(EPOLL_EVENT_BYTES);
  const v = new DataView(ev.buffer);
  v.setUint32(0, wanted ? EPOLLIN : 0, true);
  v.setBigUint64(4, BigInt(data), true);
  checked('epoll_ctl', raw.epollCtl(epfd, EPOLL_CTL_MOD, fd, ev));
}

export function epollWait(epfd: number, max: number, timeoutMs: number): number[] {
  const buf = new Uint8Array(EPOLL_EVENT_BYTES * max);
  const n = raw.epollWait(epfd, buf, max, timeoutMs);
  if (n < 0) {
    const e = koffi.errno();
    if (e === EINTR) return [];
    throw syscallError('epoll_wait', e);
  }
  const v = new DataView(buf.buffer);
  return Array.from({ length: n }, (_, i) => Number(v.getBigUint64(i * EPOLL_EVENT_BYTES + 4, true)));
}

/** Reads and returns an eventfd's counter (0 when nothing was signalled: the fd must be non-blocking). */
export function eventfdRead(fd: number): bigint {
  const buf = new Uint8Array(8);
  const n = raw.read(fd, buf, 8);
  if (n !== 8) return 0n;
  return new DataView(buf.buffer).getBigUint64(0, true);
}

/** Adds 1 to an eventfd's counter (wakes whoever waits on it). */
export function eventfdSignal(fd: number): void {
  const buf = new Uint8Array(8);
  new DataView(buf.buffer).setBigUint64(0, 1n, true);
  raw.write(fd, buf, 8);
}

/** flock(2); returns false instead of throwing when LOCK_NB finds the lock taken. */
export function flock(fd: number, op: number): boolean {
  if (raw.flock(fd, op) === 0) return true;
  const e = koffi.errno();
  if (e === EWOULDBLOCK) return false;
  throw syscallError('flock', e);
}

/** fallocate(2); returns the errno instead of throwing (callers fall back when it is EOPNOTSUPP). */
export function fallocate(fd: number, mode: number, offset: number, len: number): number {
  return raw.fallocate(fd, mode, offset, len) === 0 ? 0 : koffi.errno();
}

export function memfdCreate(name: string): number {
  return checked('memfd_create', raw.memfdCreate(name, MFD_CLOEXEC));
}

export function ftruncate(fd: number, len: number): void {
  checked('ftruncate', raw.ftruncate(fd, len));
}

export function eventfd(initial = 0, flags = EFD_CLOEXEC): number {
  return checked('eventfd', raw.eventfd(initial, flags));
}

export function read(fd: number, buf: Uint8Array): number {
  return checked('read', raw.read(fd, buf, buf.length));
}

/** read(2) on a non-blocking fd: bytes read, or -1 when nothing is there (EAGAIN). */
export function readNonBlocking(fd: number, buf: Uint8Array): number {
  for (;;) {
    const n = raw.read(fd, buf, buf.length);
    if (n >= 0) return n;
    const e = errno();
    if (e === EAGAIN) return -1;
    if (e !== EINTR) throw syscallError('read', e);
  }
}

/** writev(2) from `count` iovecs; returns bytes written, or -errno (the caller decides what a failure means). */
export function writevRaw(fd: number, iov: Uint8Array, count: number): number {
  for (;;) {
    const n = raw.writev(fd, iov, count);
    if (n >= 0) return n;
    const e = errno();
    if (e !== EINTR) return -e;
  }
}

export function write(fd: number, buf: Uint8Array): number {
  return checked('write', raw.write(fd, buf, buf.length));
}

const CLOCK_THREAD_CPUTIME_ID = 3;
const timespec = new Uint8Array(16);
const timespecView = new DataView(timespec.buffer);

/** CPU time of the calling thread in ns (clock_gettime: ~0.3 µs here, cheap enough to take per handler call). */
export function threadCpuTimeNs(): number {
  checked('clock_gettime', raw.clockGettime(CLOCK_THREAD_CPUTIME_ID, timespec));
  return Number(timespecView.getBigInt64(0, true)) * 1e9 + Number(timespecView.getBigInt64(8, true));
}

export function gettid(): number {
  return raw.gettid();
}

export function getpid(): number {
  return raw.getpid();
}

export function tgkill(tgid: number, tid: number, sig: number): void {
  checked('tgkill', raw.tgkill(tgid, tid, sig));
}

/** A kernel-ABI signal set (8 bytes) / glibc sigset_t (128 bytes) holding the given signals. */
export function sigset(signals: readonly number[], bytes = 128): Uint8Array {
  const set = new Uint8Array(bytes);
  for (const s of signals) set[(s - 1) >> 3]! |= 1 << ((s - 1) & 7);
  return set;
}

/** Blocks `signals` in the calling thread. */
export function blockSignals(signals: readonly number[]): void {
  const r = raw.pthreadSigmask(SIG_BLOCK, sigset(signals), null);
  if (r !== 0) throw syscallError('pthread_sigmask', r);
}

/** Consumes pending instances of `signals` in the calling thread without waiting. */
export function drainSignals(signals: readonly number[]): number {
  const set = sigset(signals);
  const zero = new Uint8Array(16);
  let n = 0;
  while (raw.sigtimedwait(set, null, zero) > 0) n++;
  return n;
}

