// Virtio 1.2 §5.10.6: the virtio-vsock packet header (struct virtio_vsock_hdr, 44 bytes, little
// endian) and the constants of the stream protocol. Pure: encode and decode only.

export const VSOCK_HDR_BYTES = 44;
/** The host's context ID (VMADDR_CID_HOST). */
export const HOST_CID = 2;
/** Linux's VIRTIO_VSOCK_MAX_PKT_BUF_SIZE: no data packet carries more. */
export const MAX_PAYLOAD = 64 * 1024;

export const VSOCK_TYPE_STREAM = 1;
export const VSOCK_OP = { INVALID: 0, REQUEST: 1, RESPONSE: 2, RST: 3, SHUTDOWN: 4, RW: 5, CREDIT_UPDATE: 6, CREDIT_REQUEST: 7 } as const;
/** SHUTDOWN flags: the sender will receive no more / send no more. */
export const SHUTDOWN_F = { RCV: 1, SEND: 2 } as const;
/** struct virtio_vsock_event id: the guest must drop every connection (after a snapshot restore). */
export const VSOCK_EVENT_TRANSPORT_RESET = 0;

export interface VsockHeader {
  srcCid: bigint;
  dstCid: bigint;
  srcPort: number;
  dstPort: number;
  len: number;
  type: number;
  op: number;
  flags: number;
  bufAlloc: number;
  fwdCnt: number;
}

export function decodeHeader(b: Uint8Array): VsockHeader {
  if (b.length < VSOCK_HDR_BYTES) throw new RangeError(`a vsock header is ${VSOCK_HDR_BYTES} bytes, got ${b.length}`);
  const v = new DataView(b.buffer, b.byteOffset, VSOCK_HDR_BYTES);
  return {
    srcCid: v.getBigUint64(0, true), dstCid: v.getBigUint64(8, true), srcPort: v.getUint32(16, true), dstPort: v.getUint32(20, true),
    len: v.getUint32(24, true), type: v.getUint16(28, true), op: v.getUint16(30, true), flags: v.getUint32(32, true),
    bufAlloc: v.getUint32(36, true), fwdCnt: v.getUint32(40, true),
  };
}

export function encodeHeader(h: VsockHeader, into = new Uint8Array(VSOCK_HDR_BYTES)): Uint8Array {
  const v = new DataView(into.buffer, into.byteOffset, VSOCK_HDR_BYTES);
  v.setBigUint64(0, h.srcCid, true);
  v.setBigUint64(8, h.dstCid, true);
  v.setUint32(16, h.srcPort, true);
  v.setUint32(20, h.dstPort, true);
  v.setUint32(24, h.len, true);
  v.setUint16(28, h.type, true);
  v.setUint16(30, h.op, true);
  v.setUint32(32, h.flags, true);
  v.setUint32(36, h.bufAlloc, true);
  v.setUint32(40, h.fwdCnt, true);
  return into;
}

/** The device configuration (§5.10.4): le64 guest_cid. */
export function vsockConfig(guestCid: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(guestCid), true);
  return b;
}

/** Guest CIDs 0–2 are reserved (hypervisor, local, host) and 0xFFFFFFFF is VMADDR_CID_ANY. */
export function isGuestCid(cid: number): boolean {
  return Number.isInteger(cid) && cid >= 3 && cid < 0xffffffff;
}
