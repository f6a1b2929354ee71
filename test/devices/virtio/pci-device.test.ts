// A virtio-blk function on PCI as a driver discovers it: IDs, BAR 0, the virtio capabilities
// (found the way Linux's virtio_pci_find_capability walks the list), MSI-X, the block config.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PciConfigSpace, PCI_CFG } from '../../../src/devices/pci/config-space.js';
import { BAR_LAYOUT, createVirtioPciDevice, VIRTIO_ID, VIRTIO_PCI_CAP } from '../../../src/devices/virtio/pci-device.js';
import { blockConfig, blockFeatures, VIRTIO_BLK_F } from '../../../src/devices/virtio/block/config.js';
import { VirtioPciCommonConfig, COMMON, VIRTIO_F_VERSION_1 } from '../../../src/devices/virtio/pci-common.js';

const u = (c: PciConfigSpace, o: number, len: number): number => {
  const d = new Uint8Array(len);
  c.read(o, d);
  return d.reduce((v, b, i) => v + b * 2 ** (8 * i), 0);
};

test('a virtio-blk function: IDs, a 64-bit BAR, the four virtio capabilities and MSI-X', () => {
  const cfg = blockConfig(64 * 2 ** 20);
  const s = createVirtioPciDevice({ deviceId: VIRTIO_ID.BLOCK, classCode: [0x01, 0x80, 0x00], features: blockFeatures(false), queueMaxSizes: [256], deviceConfig: cfg, barAddress: 0x1_0000_0000 });
  const c = new PciConfigSpace(s.config);
  assert.equal(u(c, PCI_CFG.VENDOR_ID, 2), 0x1af4);
  assert.equal(u(c, PCI_CFG.DEVICE_ID, 2), 0x1042);
  assert.equal(u(c, PCI_CFG.REVISION, 1), 1);
  assert.equal(u(c, PCI_CFG.SUBSYSTEM_ID, 2), 0x40);
  assert.equal(c.barAddress(0), 0x1_0000_0000);
  const found = new Map<number, { bar: number; offset: number; length: number; at: number }>();
  let msix = 0;
  for (let p = u(c, PCI_CFG.CAPABILITIES, 1); p !== 0; p = u(c, p + 1, 1)) {
    if (u(c, p, 1) === 0x11) msix = p;
    if (u(c, p, 1) !== 0x09) continue;
    found.set(u(c, p + 3, 1), { bar: u(c, p + 4, 1), offset: u(c, p + 8, 4), length: u(c, p + 12, 4), at: p });
  }
  assert.deepEqual([...found.keys()].sort(), [VIRTIO_PCI_CAP.COMMON, VIRTIO_PCI_CAP.NOTIFY, VIRTIO_PCI_CAP.ISR, VIRTIO_PCI_CAP.DEVICE]);
  assert.equal(found.get(VIRTIO_PCI_CAP.COMMON)!.length, 0x38);
  assert.equal(found.get(VIRTIO_PCI_CAP.DEVICE)!.offset, BAR_LAYOUT.DEVICE);
  assert.equal(found.get(VIRTIO_PCI_CAP.DEVICE)!.length, cfg.length);
  const notify = found.get(VIRTIO_PCI_CAP.NOTIFY)!;
  assert.equal(u(c, notify.at + 2, 1), 20, 'notify cap is 20 bytes with its multiplier');
  assert.equal(u(c, notify.at + 16, 4), 0);
  for (const f of found.values()) assert.ok(f.bar === 0 && f.offset + f.length <= BAR_LAYOUT.SIZE);
  assert.ok(msix > 0);
  assert.equal(u(c, msix + 2, 2), 1, 'two vectors: config and the queue');
  assert.equal(u(c, msix + 4, 4), BAR_LAYOUT.MSIX_TABLE);
  assert.equal(u(c, msix + 8, 4), BAR_LAYOUT.MSIX_PBA);
  const common = new VirtioPciCommonConfig(s.common);
  common.write(COMMON.DEVICE_FEATURE_SELECT, 4, 1);
  assert.equal(common.read(COMMON.DEVICE_FEATURE, 4), Number(VIRTIO_F_VERSION_1 >> 32n));
  assert.equal(new DataView(cfg.buffer).getBigUint64(0, true), 131072n, 'capacity in sectors');
  assert.equal(blockFeatures(true) & VIRTIO_BLK_F.RO, VIRTIO_BLK_F.RO);
  assert.equal(blockFeatures(true) & VIRTIO_BLK_F.DISCARD, 0n);
});
