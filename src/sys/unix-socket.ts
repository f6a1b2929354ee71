// Non-blocking Unix stream sockets and epoll with event masks, for the I/O thread's event loop
// (the vsock device's host side). Raw syscalls: the I/O thread blocks in epoll_wait, so Node's
// own sockets (which need its event loop) cannot serve there.
import koffi from 'koffi';
import { TypevisorError } from '../base/errors.js';
import { syscallError } from './libc.js';

const libc = koffi.load('libc.so.6');
const raw = {
  socket: libc.func('int socket(int domain, int type, int protocol)') as (d: number, t: number, p: number) => number,
  bind: libc.func('int bind(int fd, const uint8_t *addr, int len)') as (fd: number, a: Uint8Array, l: number) => number,
  listen: libc.func('int listen(int fd, int backlog)') as (fd: number, b: number) => number,
  accept4: libc.func('int accept4(int fd, void *addr, void *len, int flags)') as (fd: number, a: null, l: null, f: number) => number,
  connect: libc.func('int connect(int fd, const uint8_t *addr, int len)') as (fd: number, a: Uint8Array, l: number) => number,
  send: libc.func('long send(int fd, const uint8_t *buf, size_t n, int flags)') as (fd: number, b: Uint8Array, n: number, f: number) => number,
  recv: libc.func('long recv(int fd, _Out_ uint8_t *buf, size_t n, int flags)') as (fd: number, b: Uint8Array, n: number, f: number) => number,
  shutdown: libc.func('int shutdown(int fd, int how)') as (fd: number, how: number) => number,
  close: libc.func('int close(int fd)') as (fd: number) => number,
  epollCtl: libc.func('int epoll_ctl(int epfd, int op, int fd, uint8_t *event)') as (epfd: number, op: number, fd: number, ev: Uint8Array | null) => number,
  epollWait: libc.func('int epoll_wait(int epfd, _Out_ uint8_t *events, int max, int timeout)') as (epfd: number, ev: Uint8Array, max: number, timeout: number) => number,
};

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
const SHUT_RD = 0;
const SHUT_WR = 1;
const EMFILE = 24;
const ENFILE = 23;
const EINTR = 4;
const EAGAIN = 11;
const EPOLL_CTL_ADD = 1;
const EPOLL_CTL_DEL = 2;
const EPOLL_CTL_MOD = 3;
const EPOLL_EVENT_BYTES = 12;
export const EPOLL = { IN: 0x1, OUT: 0x4, ERR: 0x8, HUP: 0x10, RDHUP: 0x2000 } as const;
/** sun_path is 108 bytes, NUL included. */
export const MAX_UNIX_PATH_BYTES = 107;

function sockaddrUn(path: string): Uint8Array {
  const bytes = Buffer.from(path, 'utf8');
  if (bytes.length === 0 || bytes.length > MAX_UNIX_PATH_BYTES) {
    throw new TypevisorError('INVALID_ARGUMENT', `the socket path ${path} is ${bytes.length} bytes; a Unix socket path must be 1–${MAX_UNIX_PATH_BYTES} — choose a shorter one`);
  }
  const addr = new Uint8Array(110);
  addr[0] = AF_UNIX;
  addr.set(bytes, 2);
  return addr;
}

function fail(name: string): never {
  throw syscallError(name, koffi.errno());
}

/** A listening socket at `path` (which must not exist), non-blocking. */
export function listenUnix(path: string, backlog = 128): number {
  const addr = sockaddrUn(path);
  const fd = raw.socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) fail('socket');
  if (raw.bind(fd, addr, addr.length) < 0 || raw.listen(fd, backlog) < 0) {
    const e = koffi.errno();
    raw.close(fd);
    throw syscallError(`bind ${path}`, e, e === 98 ? 'the path is in use: another VM (or a stale socket) has it' : '');
  }
  return fd;
}

/** The next waiting connection (non-blocking); -1 when none waits, -2 when this process is out of file descriptors. */
export function acceptUnix(fd: number): number {
  for (;;) {
    const c = raw.accept4(fd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c >= 0) return c;
    const e = koffi.errno();
    if (e === EINTR) continue;
    if (e === EMFILE || e === ENFILE) return -2;
    // EAGAIN, or a connection that went away before we took it (ECONNABORTED): nothing to take now.
    return -1;
  }
}

/** Whether `path` plus a suffix of `extra` bytes still fits a Unix socket address. */
export function fitsUnixPath(path: string, extra = 0): boolean {
  return Buffer.byteLength(path, 'utf8') + extra <= MAX_UNIX_PATH_BYTES;
}

/** Connects to the listener at `path`; a non-blocking fd, or -1 if nobody listens there (or it is full). */
export function connectUnix(path: string): number {
  const addr = sockaddrUn(path);
  const fd = raw.socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  if (raw.connect(fd, addr, addr.length) === 0) return fd;
  raw.close(fd);
  return -1;
}

/** send(2) without blocking or SIGPIPE: bytes taken, 0 when the socket is full, -1 when the peer is gone. */
export function sendSome(fd: number, data: Uint8Array): number {
  if (data.length === 0) return 0;
  for (;;) {
    const n = raw.send(fd, data, data.length, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n >= 0) return n;
    const e = koffi.errno();
    if (e === EINTR) continue;
    return e === EAGAIN ? 0 : -1;
  }
}

/** recv(2) without blocking: bytes read, 0 at the end of the stream, -1 when nothing waits; a broken connection reads as its end. */
export function recvSome(fd: number, into: Uint8Array): number {
  if (into.length === 0) return -1;
  for (;;) {
    const n = raw.recv(fd, into, into.length, MSG_DONTWAIT);
    if (n >= 0) return n;
    const e = koffi.errno();
    if (e === EINTR) continue;
    return e === EAGAIN ? -1 : 0;
  }
}

export function shutdownWrite(fd: number): void {
  raw.shutdown(fd, SHUT_WR);
}

/** Our side reads no more: on a Unix stream socket the peer's writes then fail with EPIPE. */
export function shutdownRead(fd: number): void {
  raw.shutdown(fd, SHUT_RD);
}

export function closeSocket(fd: number): void {
  raw.close(fd);
}

function epollEvent(events: number, data: number): Uint8Array {
  const ev = new Uint8Array(EPOLL_EVENT_BYTES);
  const v = new DataView(ev.buffer);
  v.setUint32(0, events, true);
  v.setBigUint64(4, BigInt(data), true);
  return ev;
}

/** Adds `fd` to the epoll set with an event mask (0: in the set, watching nothing yet). */
export function epollAddEvents(epfd: number, fd: number, events: number, data: number): void {
  if (raw.epollCtl(epfd, EPOLL_CTL_ADD, fd, epollEvent(events, data)) < 0) fail('epoll_ctl(ADD)');
}

export function epollModifyEvents(epfd: number, fd: number, events: number, data: number): void {
  if (raw.epollCtl(epfd, EPOLL_CTL_MOD, fd, epollEvent(events, data)) < 0) fail('epoll_ctl(MOD)');
}

export function epollRemove(epfd: number, fd: number): void {
  raw.epollCtl(epfd, EPOLL_CTL_DEL, fd, null);
}

/** Waits up to `timeoutMs`; returns [data, events] of each ready fd (empty on timeout or EINTR). */
export function epollWaitEvents(epfd: number, max: number, timeoutMs: number): [number, number][] {
  const buf = new Uint8Array(EPOLL_EVENT_BYTES * max);
  const n = raw.epollWait(epfd, buf, max, timeoutMs);
  if (n < 0) {
    if (koffi.errno() === EINTR) return [];
    fail('epoll_wait');
  }
  const v = new DataView(buf.buffer);
  return Array.from({ length: n }, (_, i) => [Number(v.getBigUint64(i * EPOLL_EVENT_BYTES + 4, true)), v.getUint32(i * EPOLL_EVENT_BYTES, true)]);
}
