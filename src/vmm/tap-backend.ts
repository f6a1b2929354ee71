// The TAP as a virtio-net backend on the I/O thread: frames leave with one writev straight from
// guest memory, arrive with one read into the device's frame buffer, and the TAP's readiness is
// watched only while the guest has receive buffers (epoll interest switched off otherwise, so a
// full guest never makes the thread spin).
import * as libc from '../sys/libc.js';
import { setTapOffload, TUN_F } from '../sys/tap.js';
import { VIRTIO_NET_F } from '../devices/virtio/net/config.js';
import type { NetBackend } from '../devices/virtio/net/device.js';

const MAX_PARTS = 256;

export class TapBackend implements NetBackend {
  private readonly iovBytes = new Uint8Array(MAX_PARTS * libc.IOVEC_BYTES);
  private readonly iov = new DataView(this.iovBytes.buffer);
  /** The TAP is not watched until the device starts: it may be readable long before (the host's IPv6 chatter during boot). */
  private interested = false;

  /** `watch(wanted)` switches the I/O thread's epoll interest in the TAP fd (registered with none). */
  constructor(private readonly fd: number, private readonly watch: (wanted: boolean) => void) {}

  send(parts: readonly Uint8Array[]): boolean {
    if (parts.length > MAX_PARTS) return false;
    for (let i = 0; i < parts.length; i++) {
      const address = libc.hostAddressOf(parts[i]!);
      if (address === undefined) return this.sendCopy(parts);
      this.iov.setBigUint64(i * libc.IOVEC_BYTES, BigInt(address), true);
      this.iov.setBigUint64(i * libc.IOVEC_BYTES + 8, BigInt(parts[i]!.length), true);
    }
    // A TAP takes a frame whole or not at all; EINVAL (a bad virtio header), EIO (link down) … drop it.
    return libc.writevRaw(this.fd, this.iovBytes, parts.length) > 0;
  }

  /** For memory outside the host mapping (unit tests): one copy. */
  private sendCopy(parts: readonly Uint8Array[]): boolean {
    const frame = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { frame.set(p, at); at += p.length; }
    try {
      return libc.write(this.fd, frame) > 0;
    } catch {
      return false;
    }
  }

  receive(into: Uint8Array): number {
    return libc.readNonBlocking(this.fd, into);
  }

  setReceiveInterest(wanted: boolean): void {
    if (wanted === this.interested) return;
    this.interested = wanted;
    this.watch(wanted);
  }

  setGuestFeatures(features: bigint): void {
    let flags = 0;
    if (features & VIRTIO_NET_F.GUEST_CSUM) {
      flags |= TUN_F.CSUM;
      if (features & VIRTIO_NET_F.GUEST_TSO4) flags |= TUN_F.TSO4;
      if (features & VIRTIO_NET_F.GUEST_TSO6) flags |= TUN_F.TSO6;
    }
    setTapOffload(this.fd, flags);
  }
}
