// Virtio 1.2 §4.1: a virtio device on PCI — its configuration space (IDs, one 64-bit memory BAR,
// the four virtio capabilities and MSI-X) and what lives where inside the BAR. Everything a vCPU
// thread needs to serve an access is shared memory (common config, MSI-X table, ISR).
import { PciConfigSpace } from '../pci/config-space.js';
import { addMsixCapability, MsixTable } from '../pci/msix.js';
import { VirtioPciCommonConfig } from './pci-common.js';

export const VIRTIO_PCI_VENDOR = 0x1af4;
/** Modern devices: 0x1040 + the virtio device ID (§4.1.2.1). */
export const VIRTIO_PCI_DEVICE_BASE = 0x1040;
export const VIRTIO_ID = { NET: 1, BLOCK: 2, CONSOLE: 3, RNG: 4, BALLOON: 5, VSOCK: 19 } as const;
const PCI_CAP_ID_VNDR = 0x09;
/** struct virtio_pci_cap cfg_type values (§4.1.4). */
export const VIRTIO_PCI_CAP = { COMMON: 1, NOTIFY: 2, ISR: 3, DEVICE: 4, PCI: 5 } as const;

/** The BAR's layout: one 4 KiB page per region, MSI-X table and PBA last. */
export const BAR_LAYOUT = {
  COMMON: 0x0000,
  ISR: 0x1000,
  DEVICE: 0x2000,
  NOTIFY: 0x3000,
  MSIX_TABLE: 0x4000,
  MSIX_PBA: 0x6000,
  SIZE: 0x8000,
} as const;
/** Every queue notifies at NOTIFY + 0 (queue_notify_off 0 and a multiplier of 0); the value written is the queue index. */
export const NOTIFY_OFF_MULTIPLIER = 0;

export interface VirtioPciDeviceSpec {
  deviceId: number;
  /** PCI class: base, sub, interface. */
  classCode: [number, number, number];
  features: bigint;
  queueMaxSizes: readonly number[];
  /** Device-specific configuration (read by the driver at BAR DEVICE); over a SharedArrayBuffer where the VMM changes it while the VM runs. */
  deviceConfig: Uint8Array;
  /** The bytes [from, to) of the device configuration the driver may write (the balloon's `actual`); none by default. */
  deviceConfigWritable?: readonly [number, number];
  /** Where BAR 0 starts (64-bit, prefetchable no, 32 KiB aligned). */
  barAddress: number;
}

/** The shared state of one virtio-pci function, handed to each thread that serves it. */
export interface VirtioPciState {
  config: SharedArrayBuffer;
  common: SharedArrayBuffer;
  msix: SharedArrayBuffer;
  msixVectors: number;
  /** Offset of the MSI-X capability in config space (its control word says whether MSI-X is on). */
  msixCap: number;
  /** ISR status byte (§4.1.4.5), read-to-clear. */
  isr: SharedArrayBuffer;
  deviceConfig: Uint8Array;
  deviceConfigWritable: readonly [number, number];
  barAddress: number;
  queues: number;
}

function vendorCap(config: PciConfigSpace, cfgType: number, offset: number, length: number, extra = new Uint8Array()): number {
  // struct virtio_pci_cap after cap_vndr and cap_next: cap_len, cfg_type, bar, id, padding[2], offset, length.
  const body = new Uint8Array(14 + extra.length);
  const v = new DataView(body.buffer);
  v.setUint8(0, 16 + extra.length);
  v.setUint8(1, cfgType);
  v.setUint8(2, 0);
  v.setUint32(6, offset, true);
  v.setUint32(10, length, true);
  body.set(extra, 14);
  return config.addCapability(PCI_CAP_ID_VNDR, body);
}

export function createVirtioPciDevice(spec: VirtioPciDeviceSpec): VirtioPciState {
  if (spec.deviceConfig.length > 0x1000) throw new Error('device configuration larger than its 4 KiB window');
  const config = PciConfigSpace.create({
    vendorId: VIRTIO_PCI_VENDOR, deviceId: VIRTIO_PCI_DEVICE_BASE + spec.deviceId, classCode: spec.classCode, revision: 1,
    subsystemVendorId: VIRTIO_PCI_VENDOR, subsystemId: 0x40,
  });
  config.addBar({ index: 0, kind: 'mem64', size: BAR_LAYOUT.SIZE, address: spec.barAddress });
  // One vector for configuration changes and one per queue.
  const vectors = spec.queueMaxSizes.length + 1;
  const msix = MsixTable.create(vectors);
  vendorCap(config, VIRTIO_PCI_CAP.COMMON, BAR_LAYOUT.COMMON, 0x38);
  const multiplier = new Uint8Array(4);
  new DataView(multiplier.buffer).setUint32(0, NOTIFY_OFF_MULTIPLIER, true);
  vendorCap(config, VIRTIO_PCI_CAP.NOTIFY, BAR_LAYOUT.NOTIFY, 4, multiplier);
  vendorCap(config, VIRTIO_PCI_CAP.ISR, BAR_LAYOUT.ISR, 4);
  if (spec.deviceConfig.length > 0) vendorCap(config, VIRTIO_PCI_CAP.DEVICE, BAR_LAYOUT.DEVICE, spec.deviceConfig.length);
  const msixCap = addMsixCapability(config, msix, 0, BAR_LAYOUT.MSIX_TABLE, BAR_LAYOUT.MSIX_PBA);
  const common = VirtioPciCommonConfig.create(spec.features, spec.queueMaxSizes, vectors);
  return {
    config: config.state, common: common.state, msix: msix.state, msixVectors: vectors, msixCap, isr: new SharedArrayBuffer(4),
    deviceConfig: spec.deviceConfig, deviceConfigWritable: spec.deviceConfigWritable ?? [0, 0], barAddress: spec.barAddress, queues: spec.queueMaxSizes.length,
  };
}
