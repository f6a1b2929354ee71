// PCI configuration space and the bus-0 root complex: mechanism #1, ECAM, absent functions,
// read-only bits, malformed accesses, and random accesses that must never throw.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PciConfigSpace, PCI_CFG } from '../../../src/devices/pci/config-space.js';
import { PciRootComplex, createPciRootState, hostBridgeConfig } from '../../../src/devices/pci/root-complex.js';

const u32 = (v: number): Uint8Array => { const b = new Uint8Array(4); new DataView(b.buffer).setUint32(0, v >>> 0, true); return b; };
const read = (dev: { read(o: number, d: Uint8Array): void }, offset: number, len: number): number => {
  const d = new Uint8Array(len);
  dev.read(offset, d);
  return d.reduce((v, b, i) => v + b * 2 ** (8 * i), 0);
};

function root(): PciRootComplex {
  return new PciRootComplex(createPciRootState([hostBridgeConfig().state]));
}

/** CONFIG_ADDRESS for bus/dev/fn/reg with the enable bit. */
const cf8 = (bus: number, dev: number, fn: number, reg: number): number => (0x80000000 | (bus << 16) | (dev << 11) | (fn << 8) | reg) >>> 0;

test('mechanism #1: the host bridge at 00:00.0, IDs, class, byte and word reads inside the data window', () => {
  const r = root();
  r.ports.write(0, u32(cf8(0, 0, 0, 0)));
  assert.equal(read(r.ports, 0, 4), cf8(0, 0, 0, 0), 'the latch reads back');
  assert.equal(read(r.ports, 4, 4), 0x00081b36);
  assert.equal(read(r.ports, 4, 2), 0x1b36);
  assert.equal(read(r.ports, 6, 2), 0x0008);
  assert.equal(read(r.ports, 7, 1), 0x00);
  r.ports.write(0, u32(cf8(0, 0, 0, 8)));
  assert.equal(read(r.ports, 4, 4) >>> 8, 0x060000, 'class: host bridge');
});

test('absent devices, functions and buses read all ones; the enable bit is required', () => {
  const r = root();
  for (const a of [cf8(0, 1, 0, 0), cf8(0, 0, 1, 0), cf8(1, 0, 0, 0), cf8(0, 31, 7, 0xfc), cf8(0, 0, 0, 0) & 0x7fffffff]) {
    r.ports.write(0, u32(a));
    assert.equal(read(r.ports, 4, 4), 0xffffffff, a.toString(16));
    r.ports.write(4, u32(0)); // ignored
  }
  assert.equal(read(r.ports, 1, 1), 0xff, 'a byte read of the latch port is not the latch');
});

test('ECAM reaches the same space, the extended 4 KiB too; misaligned accesses read all ones', () => {
  const r = root();
  assert.equal(read(r.ecam, 0, 4), 0x00081b36);
  assert.equal(read(r.ecam, (1 << 15), 4), 0xffffffff, 'slot 1 is empty');
  assert.equal(read(r.ecam, 0x100, 4), 0, 'extended space of a present function');
  assert.equal(read(r.ecam, 0xfff, 1), 0);
  assert.equal(read(r.ecam, 2, 4), 0xffffffff, 'misaligned dword');
  assert.equal(read(r.ecam, 0xffffff, 1), 0xff, 'beyond bus 0');
});

test('writes change only the writable bits: command, interrupt line; IDs and class stay', () => {
  const r = root();
  r.ecam.write(PCI_CFG.VENDOR_ID, u32(0x12345678));
  assert.equal(read(r.ecam, 0, 4), 0x00081b36);
  r.ecam.write(PCI_CFG.COMMAND, u32(0xffffffff));
  assert.equal(read(r.ecam, PCI_CFG.COMMAND, 2), 0x0407);
  assert.equal(read(r.ecam, PCI_CFG.STATUS, 2), 0, 'status is not writable this way');
  r.ports.write(0, u32(cf8(0, 0, 0, PCI_CFG.INTERRUPT_LINE)));
  r.ports.write(4, Uint8Array.of(11));
  assert.equal(read(r.ecam, PCI_CFG.INTERRUPT_LINE, 1), 11);
  r.ecam.write(PCI_CFG.BAR0, u32(0xffffffff));
  assert.equal(read(r.ecam, PCI_CFG.BAR0, 4), 0, 'a bridge without BARs sizes as zero');
});

test('state is shared: a second root complex over the same state (another vCPU thread) sees the latch and writes', () => {
  const state = createPciRootState([hostBridgeConfig().state]);
  const a = new PciRootComplex(state);
  const b = new PciRootComplex(state);
  a.ports.write(0, u32(cf8(0, 0, 0, PCI_CFG.COMMAND)));
  b.ports.write(4, Uint8Array.of(0x06, 0));
  assert.equal(read(a.ports, 4, 2), 0x0006);
});

test('property: random accesses to the ports and the ECAM never throw, and never change the IDs', () => {
  const r = root();
  fc.assert(fc.property(fc.boolean(), fc.boolean(), fc.integer({ min: 0, max: 0x1fffff }), fc.constantFrom(1, 2, 4, 8, 3), fc.integer({ min: 0, max: 0xffffffff }), (ecam, write, offset, len, value) => {
    const dev = ecam ? r.ecam : r.ports;
    const o = ecam ? offset : offset & 7;
    const data = u32(value).slice(0, Math.min(len, 4));
    const buf = len === 8 ? new Uint8Array(8) : data;
    if (write) dev.write(o, buf);
    else dev.read(o, buf);
  }), { numRuns: 20000 });
  assert.equal(read(r.ecam, 0, 4), 0x00081b36);
  const c = PciConfigSpace.create({ vendorId: 1, deviceId: 2, classCode: [1, 2, 3] });
  assert.equal(read(c, PCI_CFG.CLASS_PROG, 1), 3);
  assert.equal(read(c, PCI_CFG.CLASS_PROG + 2, 1), 1);
});
