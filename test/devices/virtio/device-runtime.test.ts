// The shared virtio I/O side as a driver drives it through BAR 0: an interrupt raised while its
// MSI-X vector is masked is held in the PBA and goes out exactly once when the vector is unmasked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as libc from '../../../src/sys/libc.js';
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import { PciConfigSpace } from '../../../src/devices/pci/config-space.js';
import { MsixTable } from '../../../src/devices/pci/msix.js';
import { BAR_LAYOUT, createVirtioPciDevice, VIRTIO_ID } from '../../../src/devices/virtio/pci-device.js';
import { virtioBarDevice } from '../../../src/devices/virtio/pci-bar.js';
import { COMMON, STATUS, VIRTIO_F_VERSION_1 } from '../../../src/devices/virtio/pci-common.js';
import { RNG_FEATURES, RNG_METRICS, RngDeviceRuntime } from '../../../src/devices/virtio/rng.js';

const le = (value: number | bigint, len: number): Uint8Array => {
  const b = new Uint8Array(len);
  let v = BigInt(value);
  for (let i = 0; i < len; i++) { b[i] = Number(v & 0xffn); v >>= 8n; }
  return b;
};

test('a masked vector keeps its interrupt pending and delivers it once on unmask', () => {
  const state = createVirtioPciDevice({ deviceId: VIRTIO_ID.RNG, classCode: [0xff, 0, 0], features: RNG_FEATURES, queueMaxSizes: [8], deviceConfig: new Uint8Array(), barAddress: 0xc000_0000 });
  const controlFd = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
  const queueFd = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
  try {
    const bar = virtioBarDevice({ state, controlFd, queueFds: [queueFd], vectors: [] });
    const w = (offset: number, value: number | bigint, len: number): void => bar.write(offset, le(value, len));
    const memory = GuestMemory.anonymous(0x10000);
    const raised: { vector: number; data: number }[] = [];
    const rng = new RngDeviceRuntime(memory, state, new SharedArrayBuffer(8 * RNG_METRICS.SLOTS), (vector, _address, data) => raised.push({ vector, data }));

    // MSI-X on (config space), both vectors programmed, the queue's vector masked.
    const config = new PciConfigSpace(state.config);
    config.write(state.msixCap + 2, le(0x8000, 2));
    for (const v of [0, 1]) {
      w(BAR_LAYOUT.MSIX_TABLE + v * 16, 0xfee0_0000, 4);
      w(BAR_LAYOUT.MSIX_TABLE + v * 16 + 8, 0x40 + v, 4);
      w(BAR_LAYOUT.MSIX_TABLE + v * 16 + 12, v === 1 ? 1 : 0, 4);
    }
    // Driver set-up of queue 0 (desc 0x1000, avail 0x2000, used 0x3000), vector 1.
    w(COMMON.DEVICE_STATUS, STATUS.ACKNOWLEDGE | STATUS.DRIVER, 1);
    w(COMMON.DRIVER_FEATURE_SELECT, 1, 4);
    w(COMMON.DRIVER_FEATURE, Number(VIRTIO_F_VERSION_1 >> 32n), 4);
    w(COMMON.DEVICE_STATUS, STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK, 1);
    w(COMMON.QUEUE_SELECT, 0, 2);
    w(COMMON.QUEUE_MSIX_VECTOR, 1, 2);
    w(COMMON.QUEUE_DESC, 0x1000, 4);
    w(COMMON.QUEUE_DESC + 4, 0, 4);
    w(COMMON.QUEUE_DRIVER, 0x2000, 4);
    w(COMMON.QUEUE_DRIVER + 4, 0, 4);
    w(COMMON.QUEUE_DEVICE, 0x3000, 4);
    w(COMMON.QUEUE_DEVICE + 4, 0, 4);
    w(COMMON.QUEUE_ENABLE, 1, 2);
    w(COMMON.DEVICE_STATUS, STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK | STATUS.DRIVER_OK, 1);
    assert.equal(libc.eventfdRead(controlFd), 1n, 'DRIVER_OK told the I/O side');
    rng.onControl();

    // One 32-byte writable buffer made available.
    const d = new DataView(memory.bytes.buffer);
    d.setBigUint64(0x1000, 0x8000n, true);
    d.setUint32(0x1008, 32, true);
    d.setUint16(0x100c, 2, true);
    d.setUint16(0x2004, 0, true);
    d.setUint16(0x2002, 1, true);
    rng.onNotify(0);
    assert.equal(d.getUint16(0x3002, true), 1, 'request completed');
    assert.deepEqual(raised, [], 'nothing raised while masked');
    const msix = new MsixTable(state.msix, state.msixVectors);
    assert.ok(msix.isPending(1));

    // Unmasking the vector wakes the I/O side, which delivers the held interrupt once.
    w(BAR_LAYOUT.MSIX_TABLE + 16 + 12, 0, 4);
    assert.equal(libc.eventfdRead(controlFd), 1n, 'the unmask reached the I/O side');
    rng.onControl();
    assert.deepEqual(raised, [{ vector: 1, data: 0x41 }]);
    assert.ok(!msix.isPending(1));
    rng.onControl();
    assert.equal(raised.length, 1, 'delivered exactly once');
    // Unmasking a vector with nothing pending does not wake anyone.
    w(BAR_LAYOUT.MSIX_TABLE + 12, 0, 4);
    assert.equal(libc.eventfdRead(controlFd), 0n, 'no wake-up without a pending interrupt');
  } finally {
    libc.close(controlFd);
    libc.close(queueFd);
  }
});
