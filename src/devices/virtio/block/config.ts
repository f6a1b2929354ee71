// Virtio 1.2 §5.2.3–5.2.4: virtio-blk feature bits and device configuration layout.
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC } from '../pci-common.js';
import { MAX_SEGMENTS, SECTOR } from './request.js';

export const VIRTIO_BLK_F = { SEG_MAX: 1n << 2n, RO: 1n << 5n, BLK_SIZE: 1n << 6n, FLUSH: 1n << 9n, DISCARD: 1n << 13n, WRITE_ZEROES: 1n << 14n } as const;
/** Descriptors per request we accept besides header and status (seg_max). */
export const SEG_MAX = 126;
export const BLK_CONFIG_BYTES = 0x3c;

export function blockFeatures(readOnly: boolean): bigint {
  return VIRTIO_F_INDIRECT_DESC | VIRTIO_F_EVENT_IDX | VIRTIO_BLK_F.SEG_MAX | VIRTIO_BLK_F.BLK_SIZE | VIRTIO_BLK_F.FLUSH |
    (readOnly ? VIRTIO_BLK_F.RO : VIRTIO_BLK_F.DISCARD | VIRTIO_BLK_F.WRITE_ZEROES);
}

/** struct virtio_blk_config for a disk of `sizeBytes` (whole sectors). */
export function blockConfig(sizeBytes: number): Uint8Array {
  const c = new Uint8Array(BLK_CONFIG_BYTES);
  const v = new DataView(c.buffer);
  v.setBigUint64(0x00, BigInt(Math.floor(sizeBytes / SECTOR)), true);
  v.setUint32(0x0c, SEG_MAX, true);
  v.setUint32(0x14, SECTOR, true);
  // Discard and write-zeroes: up to 4 GiB - 512 per segment, MAX_SEGMENTS segments, any sector alignment.
  v.setUint32(0x24, 0xffffffff >>> 9, true);
  v.setUint32(0x28, MAX_SEGMENTS, true);
  v.setUint32(0x2c, 1, true);
  v.setUint32(0x30, 0xffffffff >>> 9, true);
  v.setUint32(0x34, MAX_SEGMENTS, true);
  v.setUint8(0x38, 1);
  return c;
}
