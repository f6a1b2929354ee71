// BAR sizing and placement, the capability list, and MSI-X (capability, table, PBA) in config space.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PciConfigSpace, PCI_CFG } from '../../../src/devices/pci/config-space.js';
import { addMsixCapability, MsixTable, msixEnabled, PCI_CAP_ID_MSIX } from '../../../src/devices/pci/msix.js';

const rd = (c: { read(o: number, d: Uint8Array): void }, o: number, len = 4): number => {
  const d = new Uint8Array(len);
  c.read(o, d);
  return d.reduce((v, b, i) => v + b * 2 ** (8 * i), 0);
};
const wr = (c: { write(o: number, d: Uint8Array): void }, o: number, v: number, len = 4): void => {
  const d = new Uint8Array(len);
  for (let i = 0; i < len; i++) d[i] = Math.floor(v / 2 ** (8 * i)) & 0xff;
  c.write(o, d);
};
const device = (): PciConfigSpace => PciConfigSpace.create({ vendorId: 0x1af4, deviceId: 0x1042, classCode: [1, 0, 0] });

test('BARs size like hardware: all ones reads back the size mask with the type bits; the guest can move them', () => {
  const c = device();
  c.addBar({ index: 0, kind: 'mem32', size: 0x1000, address: 0xc0000000 });
  c.addBar({ index: 1, kind: 'io', size: 0x20, address: 0x1000 });
  c.addBar({ index: 2, kind: 'mem64', size: 0x4000, address: 0x4_0000_0000, prefetchable: true });
  assert.equal(rd(c, PCI_CFG.BAR0), 0xc0000000);
  assert.equal(rd(c, PCI_CFG.BAR0 + 4), 0x1001);
  assert.equal(rd(c, PCI_CFG.BAR0 + 8), 0x0000000c);
  assert.equal(rd(c, PCI_CFG.BAR0 + 12), 0x4);
  assert.equal(c.barAddress(2), 0x4_0000_0000);
  wr(c, PCI_CFG.BAR0, 0xffffffff);
  assert.equal(rd(c, PCI_CFG.BAR0), 0xfffff000, 'mem32 4 KiB');
  wr(c, PCI_CFG.BAR0 + 4, 0xffffffff);
  assert.equal(rd(c, PCI_CFG.BAR0 + 4), 0xffffffe1, 'io 32 bytes');
  wr(c, PCI_CFG.BAR0 + 8, 0xffffffff);
  wr(c, PCI_CFG.BAR0 + 12, 0xffffffff);
  assert.equal(rd(c, PCI_CFG.BAR0 + 8), 0xffffc00c);
  assert.equal(rd(c, PCI_CFG.BAR0 + 12), 0xffffffff);
  wr(c, PCI_CFG.BAR0 + 8, 0xd0000000);
  wr(c, PCI_CFG.BAR0 + 12, 0x1);
  assert.equal(c.barAddress(2), 0x1_d000_0000);
  wr(c, PCI_CFG.BAR0, 0xc0001234);
  assert.equal(c.barAddress(0), 0xc0001000, 'low bits stay zero');
  assert.throws(() => c.addBar({ index: 3, kind: 'mem32', size: 0x1800, address: 0 }));
  assert.throws(() => c.addBar({ index: 3, kind: 'mem32', size: 0x1000, address: 0x800 }));
  assert.throws(() => c.addBar({ index: 5, kind: 'mem64', size: 0x1000, address: 0 }));
});

test('the capability list: status bit, pointer chain, dword alignment, 256-byte limit', () => {
  const c = device();
  assert.equal(rd(c, PCI_CFG.STATUS, 2) & 0x10, 0);
  const a = c.addCapability(0x09, Uint8Array.of(1, 2, 3));
  const b = c.addCapability(0x10, new Uint8Array(6));
  assert.equal(rd(c, PCI_CFG.STATUS, 2) & 0x10, 0x10);
  assert.equal(rd(c, PCI_CFG.CAPABILITIES, 1), a);
  assert.equal(a, 0x40);
  assert.equal(b, 0x48);
  assert.equal(rd(c, a + 1, 1), b);
  assert.equal(rd(c, b + 1, 1), 0);
  wr(c, a + 2, 0xff, 1);
  assert.equal(rd(c, a + 2, 1), 1, 'capability bodies are read-only unless declared');
  assert.throws(() => { for (;;) c.addCapability(0x09, new Uint8Array(30)); }, /overflow/);
});

test('MSI-X: capability fields, enable/mask writable, table entries masked at reset, mask bit only', () => {
  const c = device();
  const t = MsixTable.create(3);
  const cap = addMsixCapability(c, t, 4, 0x0, 0x800);
  assert.equal(rd(c, cap, 1), PCI_CAP_ID_MSIX);
  assert.equal(rd(c, cap + 2, 2), 2, 'table size - 1');
  assert.equal(rd(c, cap + 4), 0x4, 'table offset 0, BIR 4');
  assert.equal(rd(c, cap + 8), 0x804);
  assert.deepEqual(msixEnabled(c, cap), { enabled: false, functionMasked: false });
  wr(c, cap + 2, 0xffff, 2);
  assert.equal(rd(c, cap + 2, 2), 0xc002);
  assert.deepEqual(msixEnabled(c, cap), { enabled: true, functionMasked: true });
  const table = t.tableDevice();
  for (let v = 0; v < 3; v++) assert.equal(t.message(v).masked, true);
  const changed: number[] = [];
  const dev = t.tableDevice((v) => changed.push(v));
  wr(dev, 16, 0xfee00000);
  wr(dev, 20, 0);
  wr(dev, 24, 0x4021);
  wr(dev, 28, 0xfffffffe);
  assert.deepEqual(t.message(1), { address: 0xfee00000n, data: 0x4021, masked: false });
  assert.equal(rd(table, 28), 0, 'reserved vector-control bits stay zero');
  const q = new Uint8Array(8);
  new DataView(q.buffer).setBigUint64(0, 0x1_fee01000n, true);
  dev.write(32, q);
  assert.equal(t.message(2).address, 0x1_fee01000n);
  assert.deepEqual(changed, [1, 1, 1, 1, 2]);
  wr(dev, 18, 0x1234, 2);
  wr(dev, 44, 0, 4);
  wr(dev, 48, 0xdead, 4);
  assert.equal(rd(dev, 2, 2), 0, 'word accesses are not allowed');
  t.setPending(2, true);
  assert.equal(rd(t.pbaDevice(), 0, 8), 4);
  t.setPending(2, false);
  assert.equal(t.isPending(2), false);
});

test('property: random table and config writes never throw or escape their space', () => {
  const t = MsixTable.create(5);
  const dev = t.tableDevice();
  const c = device();
  addMsixCapability(c, t, 0, 0, 0x1000);
  fc.assert(fc.property(fc.integer({ min: -8, max: 0x2000 }), fc.constantFrom(1, 2, 3, 4, 8), fc.boolean(), (offset, len, table) => {
    const d = new Uint8Array(len).fill(0xff);
    if (table) {
      dev.write(offset, d);
      dev.read(offset, d);
      t.pbaDevice().read(offset, d);
    } else {
      c.write(offset, d);
      c.read(offset, d);
    }
  }), { numRuns: 20000 });
  assert.equal(rd(c, PCI_CFG.VENDOR_ID, 2), 0x1af4);
  assert.equal(t.state.byteLength, 5 * 16 + 8);
});
