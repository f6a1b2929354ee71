// Virtio 1.2 §5.1.3–5.1.4: virtio-net feature bits and device configuration.
import { VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC } from '../pci-common.js';

export const VIRTIO_NET_F = {
  CSUM: 1n << 0n, GUEST_CSUM: 1n << 1n, MAC: 1n << 5n, GUEST_TSO4: 1n << 7n, GUEST_TSO6: 1n << 8n,
  HOST_TSO4: 1n << 11n, HOST_TSO6: 1n << 12n, MRG_RXBUF: 1n << 15n, STATUS: 1n << 16n,
} as const;
export const VIRTIO_NET_S_LINK_UP = 1;
/** mac[6], status u16 (max_virtqueue_pairs and later fields are for features we do not offer). */
export const NET_CONFIG_BYTES = 8;
/** receiveq1 and transmitq1; no control queue, one pair. */
export const NET_QUEUE = { RX: 0, TX: 1 } as const;

/** Offered: checksum and TSO offloads both ways (the TAP does them), mergeable RX buffers, MAC, link status. */
export const NET_FEATURES = VIRTIO_F_INDIRECT_DESC | VIRTIO_F_EVENT_IDX | VIRTIO_NET_F.CSUM | VIRTIO_NET_F.GUEST_CSUM |
  VIRTIO_NET_F.GUEST_TSO4 | VIRTIO_NET_F.GUEST_TSO6 | VIRTIO_NET_F.HOST_TSO4 | VIRTIO_NET_F.HOST_TSO6 |
  VIRTIO_NET_F.MRG_RXBUF | VIRTIO_NET_F.MAC | VIRTIO_NET_F.STATUS;

/** The device configuration, shared between threads: the main thread may take the link down and up. */
export function netConfig(mac: Uint8Array): Uint8Array {
  const c = new Uint8Array(new SharedArrayBuffer(NET_CONFIG_BYTES));
  c.set(mac.subarray(0, 6));
  setLinkUp(c, true);
  return c;
}

export function setLinkUp(config: Uint8Array, up: boolean): void {
  new DataView(config.buffer, config.byteOffset).setUint16(6, up ? VIRTIO_NET_S_LINK_UP : 0, true);
}

export function isLinkUp(config: Uint8Array): boolean {
  return (new DataView(config.buffer, config.byteOffset).getUint16(6, true) & VIRTIO_NET_S_LINK_UP) !== 0;
}

/** Parses aa:bb:cc:dd:ee:ff; a unicast address only (bit 0 of the first byte clear). */
export function parseMac(text: string): Uint8Array | undefined {
  if (!/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(text)) return undefined;
  const mac = Uint8Array.from(text.split(':').map((h) => parseInt(h, 16)));
  return (mac[0]! & 1) === 0 ? mac : undefined;
}

/** A random locally administered unicast MAC (02:xx:…). */
export function randomMac(random: (n: number) => Uint8Array): Uint8Array {
  const mac = random(6);
  mac[0] = (mac[0]! & 0xfc) | 0x02;
  return mac;
}

export function formatMac(mac: Uint8Array): string {
  return [...mac.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':');
}
