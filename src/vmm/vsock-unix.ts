// The vsock device's host side on Unix sockets, compatible with Firecracker's hybrid vsock: a host
// program connects to the VM's socket PATH and writes "CONNECT <port>\n"; once the guest accepts,
// it reads "OK <local port>\n" and the stream is the guest socket's. A guest connecting to host
// port P reaches whoever listens on "PATH_P". Runs on the I/O thread, on its event loop.
import { acceptUnix, closeSocket, connectUnix, fitsUnixPath, recvSome, sendSome, shutdownRead, shutdownWrite, EPOLL } from '../sys/unix-socket.js';
import type { VsockDeviceRuntime, VsockHost, VsockHostStream } from '../devices/virtio/vsock/device.js';
import type { IoLoop } from './io-loop.js';

/** "CONNECT 4294967295\n" is 19 bytes; a client that sends more without a newline is not speaking the protocol. */
const MAX_CONNECT_LINE = 32;
/** A client that has not sent its CONNECT line within this time is dropped. */
const HANDSHAKE_TIMEOUT_MS = 5000;
/** At most this many clients between accept and CONNECT line (beyond: the oldest is dropped). */
const MAX_HANDSHAKES = 64;
/** "_4294967295": the longest suffix a host port adds to the socket path. */
export const PORT_SUFFIX_BYTES = 11;

class UnixStream implements VsockHostStream {
  /** Our token in the event loop while the fd is in its set (0: not in it). */
  private token = 0;
  private closed = false;

  constructor(private readonly loop: IoLoop, readonly fd: number, private readonly device: () => VsockDeviceRuntime) {}

  private onEvents(events: number): void {
    // Error and hang-up read as readable: the next read sees the end of the stream.
    if (events & (EPOLL.IN | EPOLL.HUP | EPOLL.ERR)) this.device().streamReadable(this);
    if (!this.closed && events & EPOLL.OUT) this.device().streamWritable(this);
  }

  write(data: Uint8Array): number {
    return this.closed ? -1 : sendSome(this.fd, data);
  }

  read(into: Uint8Array): number {
    return this.closed ? 0 : recvSome(this.fd, into);
  }

  shutdownWrite(): void {
    if (!this.closed) shutdownWrite(this.fd);
  }

  shutdownRead(): void {
    if (!this.closed) shutdownRead(this.fd);
  }

  /**
   * epoll reports hang-up and errors whatever the mask, so a stream we want nothing from is taken
   * out of the set (a peer that hung up would otherwise wake the thread without end).
   */
  watch(readable: boolean, writable: boolean): void {
    if (this.closed) return;
    const events = (readable ? EPOLL.IN : 0) | (writable ? EPOLL.OUT : 0);
    if (events === 0) {
      if (this.token) this.loop.remove(this.fd, this.token);
      this.token = 0;
    } else if (this.token) {
      this.loop.modify(this.fd, this.token, events);
    } else {
      this.token = this.loop.add(this.fd, (e) => this.onEvents(e), events);
    }
  }

  established(localPort: number): void {
    sendSome(this.fd, new TextEncoder().encode(`OK ${localPort}\n`));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.token) this.loop.remove(this.fd, this.token);
    closeSocket(this.fd);
  }
}

/** A host client that has connected and not yet said which guest port it wants. */
interface Handshake { fd: number; token: number; line: string; since: number }

export class UnixVsockHost implements VsockHost {
  private readonly handshakes = new Set<Handshake>();
  private device: VsockDeviceRuntime | undefined;
  private listenToken = 0;
  /** Host connections refused for a malformed CONNECT line (for metrics and tests). */
  refusedHandshakes = 0;

  constructor(private readonly loop: IoLoop, private readonly listenFd: number, private readonly path: string) {}

  /** Starts accepting host clients for `device`. */
  attach(device: VsockDeviceRuntime): void {
    this.device = device;
    this.listenToken = this.loop.add(this.listenFd, () => this.acceptAll());
  }

  connect(port: number): VsockHostStream | undefined {
    const path = `${this.path}_${port}`;
    if (!fitsUnixPath(path)) return undefined;
    const fd = connectUnix(path);
    return fd < 0 ? undefined : new UnixStream(this.loop, fd, () => this.device!);
  }

  /** Drops clients that never finished their CONNECT line; listens again after running out of fds. */
  tick(now = Date.now()): void {
    for (const h of this.handshakes) if (now - h.since > HANDSHAKE_TIMEOUT_MS) this.endHandshake(h, true);
    if (this.device && this.listenToken === 0) this.listenToken = this.loop.add(this.listenFd, () => this.acceptAll());
  }

  private acceptAll(): void {
    for (;;) {
      const fd = acceptUnix(this.listenFd);
      if (fd === -2) {
        // Out of fds: the listener would stay readable and wake us without end. Stop listening
        // until the next tick; clients wait in the backlog meanwhile.
        this.loop.remove(this.listenFd, this.listenToken);
        this.listenToken = 0;
        return;
      }
      if (fd < 0) return;
      if (this.handshakes.size >= MAX_HANDSHAKES) this.endHandshake(this.handshakes.values().next().value!, true);
      const h: Handshake = { fd, token: 0, line: '', since: Date.now() };
      h.token = this.loop.add(fd, () => this.readLine(h));
      this.handshakes.add(h);
    }
  }

  /** Reads the CONNECT line a byte at a time, so that nothing the client sends after it is taken early. */
  private readLine(h: Handshake): void {
    const byte = new Uint8Array(1);
    for (;;) {
      const n = recvSome(h.fd, byte);
      if (n < 0) return;
      if (n === 0) { this.endHandshake(h, true); return; }
      if (byte[0] !== 0x0a) {
        h.line += String.fromCharCode(byte[0]!);
        if (h.line.length > MAX_CONNECT_LINE) { this.endHandshake(h, true); return; }
        continue;
      }
      const m = /^CONNECT (\d{1,10})$/.exec(h.line);
      const port = m ? Number(m[1]) : -1;
      this.endHandshake(h, !(port >= 0 && port < 2 ** 32));
      if (port >= 0 && port < 2 ** 32) this.device!.openFromHost(new UnixStream(this.loop, h.fd, () => this.device!), port);
      return;
    }
  }

  private endHandshake(h: Handshake, refuse: boolean): void {
    this.handshakes.delete(h);
    this.loop.remove(h.fd, h.token);
    if (refuse) {
      this.refusedHandshakes++;
      closeSocket(h.fd);
    }
  }
}
