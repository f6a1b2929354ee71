// Virtio 1.2 §5.10: the vsock device's I/O side — stream connections between guest sockets and
// host streams (the host side is a VsockHost: Unix sockets in the VMM, fakes in tests). Packets
// from the guest (txq) open, feed, shut down and reset connections; host data and control
// packets go out in the guest's receive buffers (rxq) within the credit the guest grants, and the
// guest may send only within ours (§5.10.6.3). Whatever a hostile driver sends wrong — headers
// that lie about lengths, spoofed addresses, packets for unknown connections, data beyond its
// credit — is dropped or answered with RST and counted; the device and other connections go on.
import type { GuestMemory } from '../../../memory/guest-memory.js';
import type { VirtioPciState } from '../pci-device.js';
import type { DescriptorChain, GuestBuffer, SplitQueue } from '../split-queue.js';
import { VirtioDeviceRuntime, type SignalMsi } from '../device-runtime.js';
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC } from '../pci-common.js';
import {
  decodeHeader, encodeHeader, HOST_CID, MAX_PAYLOAD, SHUTDOWN_F, VSOCK_HDR_BYTES, VSOCK_OP, VSOCK_TYPE_STREAM, type VsockHeader,
} from './packet.js';

export const VSOCK_FEATURES = VIRTIO_F_INDIRECT_DESC | VIRTIO_F_EVENT_IDX;
export const VSOCK_QUEUE = { RX: 0, TX: 1, EVENT: 2 } as const;
/** What each connection may have in flight from the guest before the host side has taken it. */
export const HOST_BUF_ALLOC = 256 * 1024;
/** At most this many connections per VM (beyond: RST), and this many control packets waiting for receive buffers (beyond: txq waits). */
export const MAX_CONNECTIONS = 1024;
/** Guest data held for slow host streams, all connections together (beyond: the connection that would exceed it is reset). */
export const MAX_PENDING_BYTES = 32 * 1024 * 1024;
const MAX_CONTROL_BACKLOG = 256;
/** A host connection the guest neither accepts nor refuses within this time is reset (as Firecracker does). */
const CONNECT_TIMEOUT_MS = 2000;
/** A closing connection whose host side will not take its last bytes is dropped after this. */
const CLOSE_TIMEOUT_MS = 5000;
/** Host-initiated connections get local ports from here up (Firecracker's choice too: far above well-known ports). */
const FIRST_LOCAL_PORT = 1 << 30;

/** A host-side byte stream (non-blocking). */
export interface VsockHostStream {
  /** Bytes taken (0 when the host side is full for now), or -1 when it has gone. */
  write(data: Uint8Array): number;
  /** Bytes read into `into`, 0 at the end of the stream, -1 when nothing is waiting. */
  read(into: Uint8Array): number;
  /** We will write no more (the guest shut down its sending side). */
  shutdownWrite(): void;
  /** We will read no more (the guest shut down its receiving side): the host writer should fail. */
  shutdownRead(): void;
  close(): void;
  /** The readiness the device wants to hear of (through streamReadable/streamWritable). */
  watch(readable: boolean, writable: boolean): void;
  /** A host-initiated connection was accepted by the guest; `localPort` is the host end's port. */
  established(localPort: number): void;
}

export interface VsockHost {
  /** The guest connects to host port `port`: a stream to that host service, or undefined (refused). */
  connect(port: number): VsockHostStream | undefined;
}

/** Float64 slots of the metrics buffer. */
export const VSOCK_METRICS = {
  HOST_CONNECTIONS: 0, GUEST_CONNECTIONS: 1, ACTIVE: 2, TX_BYTES: 3, RX_BYTES: 4, TX_PACKETS: 5, RX_PACKETS: 6,
  RESETS_SENT: 7, DROPPED: 8, CREDIT_VIOLATIONS: 9, NOTIFICATIONS: 10, ERRORS: 11, SLOTS: 12,
} as const;

export interface VsockDeviceMetrics {
  /** Connections opened from the host / from the guest, and open now. */
  hostConnections: number;
  guestConnections: number;
  active: number;
  /** Payload bytes guest → host (tx) and host → guest (rx), and packets each way. */
  txBytes: number;
  rxBytes: number;
  txPackets: number;
  rxPackets: number;
  resetsSent: number;
  /** Guest packets dropped as malformed (lying lengths, spoofed addresses, unknown types). */
  dropped: number;
  /** Data sent by the guest beyond the credit we gave (the connection is reset). */
  creditViolations: number;
  notifications: number;
  errors: number;
}

export function readVsockMetrics(buffer: SharedArrayBuffer): VsockDeviceMetrics {
  const m = new Float64Array(buffer);
  const k = VSOCK_METRICS;
  return {
    hostConnections: m[k.HOST_CONNECTIONS]!, guestConnections: m[k.GUEST_CONNECTIONS]!, active: m[k.ACTIVE]!, txBytes: m[k.TX_BYTES]!,
    rxBytes: m[k.RX_BYTES]!, txPackets: m[k.TX_PACKETS]!, rxPackets: m[k.RX_PACKETS]!, resetsSent: m[k.RESETS_SENT]!, dropped: m[k.DROPPED]!,
    creditViolations: m[k.CREDIT_VIOLATIONS]!, notifications: m[k.NOTIFICATIONS]!, errors: m[k.ERRORS]!,
  };
}

interface Connection {
  key: string;
  /** Our end (host side) and the guest's end. */
  localPort: number;
  peerPort: number;
  stream: VsockHostStream;
  state: 'connecting' | 'established' | 'closing';
  since: number;
  /** The guest's receive credit: its buffer and how much of what we sent it has consumed. */
  peerBufAlloc: number;
  peerFwdCnt: number;
  /** Payload bytes we sent the guest (u32 wrapping, as on the wire). */
  txCnt: number;
  /** Payload bytes the guest sent us, and those the host stream has taken. */
  rxCnt: number;
  fwdCnt: number;
  /** fwd_cnt as last told to the guest. */
  advertisedFwdCnt: number;
  /** Guest data the host stream has not taken yet. */
  pending: Uint8Array[];
  /** The host stream had data when last looked at (it is then not watched for readability). */
  readable: boolean;
  hostEof: boolean;
  /** The guest will send no more (SHUTDOWN SEND) / receive no more (SHUTDOWN RCV). */
  guestSendShut: boolean;
  guestRcvShut: boolean;
  hostWriteShut: boolean;
  watching: [boolean, boolean];
  /** In the ready list. */
  queued: boolean;
  /** Our REQUEST (host-initiated) reached the guest. */
  requestSent: boolean;
}

type Control = { conn?: Connection; op: number; flags?: number; localPort: number; peerPort: number };

const u32 = (n: number): number => n >>> 0;

export class VsockDeviceRuntime extends VirtioDeviceRuntime {
  private readonly metrics: Float64Array;
  private readonly conns = new Map<string, Connection>();
  private readonly byStream = new Map<VsockHostStream, Connection>();
  /** Connections whose stream had data, served in turn (a busy one cannot starve the others). */
  private readonly ready: Connection[] = [];
  private readonly control: Control[] = [];
  /** A receive buffer taken from rxq and not used yet (the stream had nothing after all). */
  private spare: DescriptorChain | undefined;
  private nextLocalPort = FIRST_LOCAL_PORT;
  /** Bytes in every connection's `pending`. */
  private pendingBytes = 0;
  private running = false;
  private readonly header = new Uint8Array(VSOCK_HDR_BYTES);

  constructor(memory: GuestMemory, state: VirtioPciState, private readonly guestCid: number, private readonly host: VsockHost,
    metrics: SharedArrayBuffer, signalMsi: SignalMsi, private readonly now: () => number = Date.now) {
    super(memory, state, signalMsi);
    this.metrics = new Float64Array(metrics);
  }

  // ——— entry points from the host side ———

  /** A host client asks for guest port `port` (after its "CONNECT <port>"): REQUEST goes to the guest. */
  openFromHost(stream: VsockHostStream, port: number): void {
    // A guest that takes no receive buffers cannot be asked for more connections.
    if (!this.running || this.conns.size >= MAX_CONNECTIONS || this.control.length >= MAX_CONTROL_BACKLOG) {
      stream.close();
      return;
    }
    let localPort = this.nextLocalPort;
    while (this.conns.has(`${localPort}:${port}`)) localPort = localPort + 1 >= 2 ** 32 ? FIRST_LOCAL_PORT : localPort + 1;
    this.nextLocalPort = localPort + 1 >= 2 ** 32 ? FIRST_LOCAL_PORT : localPort + 1;
    const conn = this.addConnection(localPort, port, stream, 'connecting');
    this.metrics[VSOCK_METRICS.HOST_CONNECTIONS]!++;
    this.queueControl({ conn, op: VSOCK_OP.REQUEST, localPort, peerPort: port });
    this.pump();
  }

  /** The host stream of `stream`'s connection has data (or its end). */
  streamReadable(stream: VsockHostStream): void {
    const conn = this.byStream.get(stream);
    if (!conn) return;
    conn.readable = true;
    if (!conn.queued) { conn.queued = true; this.ready.push(conn); }
    this.rewatch(conn);
    this.pump();
  }

  /** The host stream can take more of what the guest sent. */
  streamWritable(stream: VsockHostStream): void {
    const conn = this.byStream.get(stream);
    if (!conn) return;
    this.flushToHost(conn);
    this.pump();
  }

  /** Timeouts: connections the guest never answered, closing ones the host never drained. */
  tick(): void {
    const now = this.now();
    for (const conn of [...this.conns.values()]) {
      // A REQUEST that never reached the guest needs no RST: it goes from the queue with the connection.
      if (conn.state === 'connecting' && now - conn.since > CONNECT_TIMEOUT_MS) this.reset(conn, conn.requestSent);
      else if (conn.state === 'closing' && now - conn.since > CLOSE_TIMEOUT_MS) this.reset(conn, true);
    }
    this.pump();
  }

  get connectionCount(): number {
    return this.conns.size;
  }

  // ——— virtio ———

  protected override started(): void {
    this.running = true;
  }

  /** A reset device (guest reboot, driver unload) forgets every connection: each host stream is closed. */
  protected override stopped(): void {
    this.running = false;
    for (const conn of this.conns.values()) conn.stream.close();
    this.conns.clear();
    this.byStream.clear();
    this.pendingBytes = 0;
    this.ready.length = 0;
    this.control.length = 0;
    this.spare = undefined;
    this.setActive();
  }

  /** txq and rxq are served together (pump); event buffers stay in their ring until there is an event (only a snapshot restore makes one). */
  protected override process(q: number): void {
    if (q !== VSOCK_QUEUE.EVENT) this.pump();
  }

  /** Unused: pump() walks txq and rxq itself, and the event queue is left alone. */
  protected handle(): number {
    return 0;
  }

  private pumping = false;

  /**
   * Takes guest packets and fills receive buffers, in turn, until neither moves: a loop, not
   * recursion — a guest that keeps both rings full can make it long, never deep. Re-entrant calls
   * (from a host stream's callback while pumping) fold into the running loop.
   */
  private pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      for (;;) {
        const took = this.transmit();
        const sent = this.deliver();
        if (!took && !sent) break;
      }
    } finally {
      this.pumping = false;
    }
  }

  protected override notified(): void {
    this.metrics[VSOCK_METRICS.NOTIFICATIONS]!++;
  }

  protected override ringBroken(): void {
    this.metrics[VSOCK_METRICS.ERRORS]!++;
  }

  // ——— guest → host ———

  /** Takes packets from txq until it is empty or too many control packets wait for receive buffers; whether it took any. */
  private transmit(): boolean {
    const tx = this.queue(VSOCK_QUEUE.TX);
    if (!tx) return false;
    let took = false;
    try {
      while (this.control.length < MAX_CONTROL_BACKLOG) {
        const chain = tx.pop();
        if (!chain) break;
        took = true;
        this.receivePacket(chain);
        tx.push(chain.head, 0);
      }
    } catch (e) {
      this.broken(e);
      return false;
    }
    if (took) this.returned(VSOCK_QUEUE.TX);
    return took;
  }

  private receivePacket(chain: DescriptorChain): void {
    const m = this.metrics;
    const readableBytes = chain.readable.reduce((n, b) => n + b.len, 0);
    if (chain.writable.length > 0 || readableBytes < VSOCK_HDR_BYTES) { m[VSOCK_METRICS.DROPPED]!++; return; }
    const h = decodeHeader(this.gather(chain.readable, 0, VSOCK_HDR_BYTES));
    // A header that claims more payload than the buffers hold, or more than any packet may carry, is a lie.
    if (h.len > MAX_PAYLOAD || h.len > readableBytes - VSOCK_HDR_BYTES) { m[VSOCK_METRICS.DROPPED]!++; return; }
    // Spoofed source or a destination other than the host: dropped (§5.10.6.1).
    if (h.srcCid !== BigInt(this.guestCid) || h.dstCid !== BigInt(HOST_CID)) { m[VSOCK_METRICS.DROPPED]!++; return; }
    m[VSOCK_METRICS.TX_PACKETS]!++;
    const key = `${h.dstPort}:${h.srcPort}`;
    const conn = this.conns.get(key);
    if (h.type !== VSOCK_TYPE_STREAM) {
      m[VSOCK_METRICS.DROPPED]!++;
      if (h.op !== VSOCK_OP.RST) this.queueControl({ op: VSOCK_OP.RST, localPort: h.dstPort, peerPort: h.srcPort });
      return;
    }
    if (conn) {
      conn.peerBufAlloc = h.bufAlloc;
      conn.peerFwdCnt = h.fwdCnt;
    }
    switch (h.op) {
      case VSOCK_OP.REQUEST: this.guestConnects(h, conn); return;
      case VSOCK_OP.RESPONSE:
        if (conn?.state !== 'connecting') { this.unknown(h, conn); return; }
        conn.state = 'established';
        conn.stream.established(conn.localPort);
        this.rewatch(conn);
        return;
      case VSOCK_OP.RW:
        if (!conn || conn.state === 'connecting' || conn.guestSendShut) { this.unknown(h, conn); return; }
        this.dataFromGuest(conn, chain.readable, h.len);
        return;
      case VSOCK_OP.CREDIT_UPDATE:
        if (!conn) this.unknown(h, conn);
        return;
      case VSOCK_OP.CREDIT_REQUEST:
        if (!conn) { this.unknown(h, conn); return; }
        this.queueControl({ conn, op: VSOCK_OP.CREDIT_UPDATE, localPort: conn.localPort, peerPort: conn.peerPort });
        return;
      case VSOCK_OP.SHUTDOWN:
        if (!conn) { this.unknown(h, conn); return; }
        this.guestShutdown(conn, h.flags);
        return;
      case VSOCK_OP.RST:
        if (conn) this.drop(conn);
        return;
      default:
        m[VSOCK_METRICS.DROPPED]!++;
        this.unknown(h, conn);
    }
  }

  private guestConnects(h: VsockHeader, existing: Connection | undefined): void {
    if (existing || this.conns.size >= MAX_CONNECTIONS) {
      if (existing) this.reset(existing, false);
      this.queueControl({ op: VSOCK_OP.RST, localPort: h.dstPort, peerPort: h.srcPort });
      return;
    }
    const stream = this.host.connect(h.dstPort);
    if (!stream) {
      this.queueControl({ op: VSOCK_OP.RST, localPort: h.dstPort, peerPort: h.srcPort });
      return;
    }
    const conn = this.addConnection(h.dstPort, h.srcPort, stream, 'established');
    conn.peerBufAlloc = h.bufAlloc;
    conn.peerFwdCnt = h.fwdCnt;
    this.metrics[VSOCK_METRICS.GUEST_CONNECTIONS]!++;
    this.queueControl({ conn, op: VSOCK_OP.RESPONSE, localPort: conn.localPort, peerPort: conn.peerPort });
    this.rewatch(conn);
  }

  /** A packet for a connection that does not exist (or not in that state): RST, unless it was one (§5.10.6.4). */
  private unknown(h: VsockHeader, conn: Connection | undefined): void {
    if (conn) {
      this.reset(conn, true);
      return;
    }
    if (h.op !== VSOCK_OP.RST) this.queueControl({ op: VSOCK_OP.RST, localPort: h.dstPort, peerPort: h.srcPort });
  }

  private dataFromGuest(conn: Connection, readable: readonly GuestBuffer[], len: number): void {
    if (len === 0) return;
    // What the guest has sent and the host not yet taken must fit the buffer we advertised.
    if (u32(conn.rxCnt - conn.fwdCnt) + len > HOST_BUF_ALLOC) {
      this.metrics[VSOCK_METRICS.CREDIT_VIOLATIONS]!++;
      this.reset(conn, true);
      return;
    }
    conn.rxCnt = u32(conn.rxCnt + len);
    this.metrics[VSOCK_METRICS.TX_BYTES]! += len;
    // The payload follows the header, in whichever buffers hold it.
    let skip = VSOCK_HDR_BYTES;
    let left = len;
    for (const b of readable) {
      if (left === 0) break;
      if (skip >= b.len) { skip -= b.len; continue; }
      const n = Math.min(b.len - skip, left);
      const part = this.memory.slice(b.gpa + skip, n);
      skip = 0;
      left -= n;
      const taken = conn.pending.length > 0 ? 0 : conn.stream.write(part);
      if (taken < 0) { this.reset(conn, true); return; }
      this.forwarded(conn, taken);
      if (taken === n) continue;
      if (this.pendingBytes + n - taken > MAX_PENDING_BYTES) {
        this.metrics[VSOCK_METRICS.CREDIT_VIOLATIONS]!++;
        this.reset(conn, true);
        return;
      }
      conn.pending.push(part.slice(taken));
      this.pendingBytes += n - taken;
    }
    this.rewatch(conn);
  }

  /** Writes what the host stream had not taken; finishes a shutdown or close once all is through. */
  private flushToHost(conn: Connection): void {
    while (conn.pending.length > 0) {
      const part = conn.pending[0]!;
      const taken = conn.stream.write(part);
      if (taken < 0) { this.reset(conn, true); return; }
      this.forwarded(conn, taken);
      this.pendingBytes -= taken;
      if (taken < part.length) { conn.pending[0] = part.subarray(taken); break; }
      conn.pending.shift();
    }
    if (conn.pending.length === 0) {
      if (conn.guestSendShut && !conn.hostWriteShut) { conn.hostWriteShut = true; conn.stream.shutdownWrite(); }
      if (conn.state === 'closing') { this.finishClose(conn); return; }
    }
    this.rewatch(conn);
  }

  /** The host took `n` bytes: credit the guest back once half the buffer has drained. */
  private forwarded(conn: Connection, n: number): void {
    if (n <= 0) return;
    conn.fwdCnt = u32(conn.fwdCnt + n);
    if (u32(conn.fwdCnt - conn.advertisedFwdCnt) >= HOST_BUF_ALLOC / 2) {
      this.queueControl({ conn, op: VSOCK_OP.CREDIT_UPDATE, localPort: conn.localPort, peerPort: conn.peerPort });
    }
  }

  private guestShutdown(conn: Connection, flags: number): void {
    if (flags & SHUTDOWN_F.SEND) conn.guestSendShut = true;
    if (flags & SHUTDOWN_F.RCV && !conn.guestRcvShut) {
      conn.guestRcvShut = true;
      // The host writer then gets EPIPE, as a Linux sender whose peer shut down receiving does.
      conn.stream.shutdownRead();
    }
    if (conn.guestSendShut && conn.guestRcvShut) {
      // The guest closed its socket and waits for our RST; what it sent first still goes to the host.
      conn.state = 'closing';
      conn.since = this.now();
    }
    this.flushToHost(conn);
  }

  // ——— host → guest ———

  /** Fills receive buffers: control packets first, then data from readable streams within the guest's credit; whether it sent any. */
  private deliver(): boolean {
    const rx = this.queue(VSOCK_QUEUE.RX);
    if (!rx) return false;
    let sent = false;
    try {
      for (;;) {
        const ctl = this.control[0];
        const conn = ctl ? undefined : this.nextSender();
        if (!ctl && !conn) break;
        const chain = this.takeBuffer(rx);
        if (!chain) break;
        if (ctl) {
          this.control.shift();
          this.writePacket(rx, chain, ctl.op, ctl.localPort, ctl.peerPort, ctl.conn, 0, ctl.flags ?? 0);
          if (ctl.op === VSOCK_OP.REQUEST && ctl.conn) ctl.conn.requestSent = true;
          sent = true;
          if (ctl.op === VSOCK_OP.RST) this.metrics[VSOCK_METRICS.RESETS_SENT]!++;
        } else if (conn) {
          sent = this.sendData(rx, chain, conn) || sent;
        }
      }
    } catch (e) {
      this.broken(e);
      return false;
    }
    if (sent) this.returned(VSOCK_QUEUE.RX);
    return sent;
  }

  /** The next established connection (in turn) whose stream has data and whose guest has room for it. */
  private nextSender(): Connection | undefined {
    for (let tries = this.ready.length; tries > 0; tries--) {
      const conn = this.ready.shift()!;
      // Gone, or drained: it rejoins when its stream is readable again.
      if (!conn.readable || !this.conns.has(conn.key)) { conn.queued = false; continue; }
      this.ready.push(conn);
      if (conn.state === 'established' && !conn.guestRcvShut && this.credit(conn) > 0) return conn;
    }
    return undefined;
  }

  private credit(conn: Connection): number {
    return Math.max(0, conn.peerBufAlloc - u32(conn.txCnt - conn.peerFwdCnt));
  }

  private takeBuffer(rx: SplitQueue): DescriptorChain | undefined {
    for (;;) {
      const chain = this.spare ?? rx.pop();
      this.spare = undefined;
      if (!chain) return undefined;
      if (chain.readable.length === 0 && chain.writableBytes >= VSOCK_HDR_BYTES) return chain;
      // Not a receive buffer: back, empty, and counted.
      this.metrics[VSOCK_METRICS.ERRORS]!++;
      rx.push(chain.head, 0);
    }
  }

  /** Reads from the stream straight into the buffer after the header; returns whether the buffer was used. */
  private sendData(rx: SplitQueue, chain: DescriptorChain, conn: Connection): boolean {
    const at = this.locate(chain.writable, VSOCK_HDR_BYTES);
    const room = at ? Math.min(at.buffer.len - at.offset, this.credit(conn), MAX_PAYLOAD) : 0;
    if (room === 0) {
      // The header fills the whole buffer: nothing can be carried in it.
      this.metrics[VSOCK_METRICS.ERRORS]!++;
      rx.push(chain.head, 0);
      return true;
    }
    const n = conn.stream.read(this.memory.slice(at!.buffer.gpa + at!.offset, room));
    if (n < 0) {
      conn.readable = false;
      this.spare = chain;
      this.rewatch(conn);
      return false;
    }
    if (n === 0) {
      // The host end will send no more.
      conn.readable = false;
      conn.hostEof = true;
      this.writePacket(rx, chain, VSOCK_OP.SHUTDOWN, conn.localPort, conn.peerPort, conn, 0, SHUTDOWN_F.SEND);
      this.rewatch(conn);
      return true;
    }
    this.writePacket(rx, chain, VSOCK_OP.RW, conn.localPort, conn.peerPort, conn, n, 0);
    conn.txCnt = u32(conn.txCnt + n);
    this.metrics[VSOCK_METRICS.RX_BYTES]! += n;
    return true;
  }

  private writePacket(rx: SplitQueue, chain: DescriptorChain, op: number, localPort: number, peerPort: number, conn: Connection | undefined, len: number, flags: number): void {
    if (conn) conn.advertisedFwdCnt = conn.fwdCnt;
    encodeHeader({
      srcCid: BigInt(HOST_CID), dstCid: BigInt(this.guestCid), srcPort: localPort, dstPort: peerPort, len, type: VSOCK_TYPE_STREAM, op, flags,
      bufAlloc: HOST_BUF_ALLOC, fwdCnt: conn?.fwdCnt ?? 0,
    }, this.header);
    this.scatter(chain.writable, this.header);
    rx.push(chain.head, VSOCK_HDR_BYTES + len);
    this.metrics[VSOCK_METRICS.RX_PACKETS]!++;
  }

  // ——— connection bookkeeping ———

  private addConnection(localPort: number, peerPort: number, stream: VsockHostStream, state: Connection['state']): Connection {
    const conn: Connection = {
      key: `${localPort}:${peerPort}`, localPort, peerPort, stream, state, since: this.now(), peerBufAlloc: 0, peerFwdCnt: 0, txCnt: 0,
      rxCnt: 0, fwdCnt: 0, advertisedFwdCnt: 0, pending: [], readable: false, hostEof: false, guestSendShut: false, guestRcvShut: false,
      hostWriteShut: false, watching: [false, false], queued: false, requestSent: false,
    };
    this.conns.set(conn.key, conn);
    this.byStream.set(stream, conn);
    this.setActive();
    return conn;
  }

  /** Watch the stream for data only when we would read it, for room only when we have something for it. */
  private rewatch(conn: Connection): void {
    const readable = conn.state === 'established' && !conn.readable && !conn.hostEof && !conn.guestRcvShut;
    const writable = conn.pending.length > 0;
    if (conn.watching[0] === readable && conn.watching[1] === writable) return;
    conn.watching = [readable, writable];
    conn.stream.watch(readable, writable);
  }

  /** Ends a connection: the host stream is closed and (if `tellGuest`) the guest gets RST. */
  private reset(conn: Connection, tellGuest: boolean): void {
    this.drop(conn);
    if (tellGuest) this.queueControl({ op: VSOCK_OP.RST, localPort: conn.localPort, peerPort: conn.peerPort });
  }

  private finishClose(conn: Connection): void {
    this.reset(conn, true);
  }

  private drop(conn: Connection): void {
    if (!this.conns.delete(conn.key)) return;
    this.byStream.delete(conn.stream);
    conn.readable = false;
    for (const p of conn.pending) this.pendingBytes -= p.length;
    conn.pending = [];
    conn.stream.close();
    for (let i = this.control.length - 1; i >= 0; i--) if (this.control[i]!.conn === conn) this.control.splice(i, 1);
    this.setActive();
  }

  private queueControl(c: Control): void {
    // One credit update per connection waiting is enough: it carries the latest fwd_cnt when sent;
    // one RST per pair of ports likewise (a second says nothing new).
    if (c.op === VSOCK_OP.CREDIT_UPDATE && this.control.some((x) => x.conn === c.conn && x.op === VSOCK_OP.CREDIT_UPDATE)) return;
    if (c.op === VSOCK_OP.RST && this.control.some((x) => x.op === VSOCK_OP.RST && x.localPort === c.localPort && x.peerPort === c.peerPort)) return;
    this.control.push(c);
  }

  private setActive(): void {
    this.metrics[VSOCK_METRICS.ACTIVE] = this.conns.size;
  }

  // ——— buffers ———

  /** The buffer and offset where byte `pos` of a chain's buffers lies. */
  private locate(buffers: readonly GuestBuffer[], pos: number): { buffer: GuestBuffer; offset: number } | undefined {
    for (const b of buffers) {
      if (pos < b.len) return { buffer: b, offset: pos };
      pos -= b.len;
    }
    return undefined;
  }

  private gather(buffers: readonly GuestBuffer[], from: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    let at = 0;
    let skip = from;
    for (const b of buffers) {
      if (at === len) break;
      if (skip >= b.len) { skip -= b.len; continue; }
      const n = Math.min(b.len - skip, len - at);
      out.set(this.memory.slice(b.gpa + skip, n), at);
      at += n;
      skip = 0;
    }
    return out;
  }

  private scatter(buffers: readonly GuestBuffer[], data: Uint8Array): void {
    let at = 0;
    for (const b of buffers) {
      if (at === data.length) break;
      const n = Math.min(b.len, data.length - at);
      this.memory.slice(b.gpa, n).set(data.subarray(at, at + n));
      at += n;
    }
  }
}
