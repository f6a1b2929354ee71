// A minimal virtio-pci driver for unit tests: programs a function's common configuration through
// its BAR the way Linux does (features, queues, MSI-X vectors, DRIVER_OK) over test memory.
import { PciConfigSpace } from '../../src/devices/pci/config-space.js';
import { BAR_LAYOUT, type VirtioPciState } from '../../src/devices/virtio/pci-device.js';
import { virtioBarDevice } from '../../src/devices/virtio/pci-bar.js';
import { COMMON, STATUS } from '../../src/devices/virtio/pci-common.js';
import type { BusDevice } from '../../src/devices/bus-device.js';

export const le = (value: number | bigint, len: number): Uint8Array => {
  const b = new Uint8Array(len);
  let v = BigInt(value);
  for (let i = 0; i < len; i++) { b[i] = Number(v & 0xffn); v >>= 8n; }
  return b;
};

export interface TestQueue { size: number; desc: number; avail: number; used: number }

/** Brings the function to DRIVER_OK with `features` accepted and `queues` enabled (vector q+1 each, unmasked). */
export function driveToOk(state: VirtioPciState, features: bigint, queues: readonly TestQueue[], fds: { controlFd: number; queueFds: number[] }): BusDevice {
  const bar = virtioBarDevice({ state, controlFd: fds.controlFd, queueFds: fds.queueFds, vectors: [] });
  const w = (offset: number, value: number | bigint, len: number): void => bar.write(offset, le(value, len));
  new PciConfigSpace(state.config).write(state.msixCap + 2, le(0x8000, 2));
  for (let v = 0; v <= queues.length; v++) {
    w(BAR_LAYOUT.MSIX_TABLE + v * 16, 0xfee0_0000, 4);
    w(BAR_LAYOUT.MSIX_TABLE + v * 16 + 8, 0x40 + v, 4);
    w(BAR_LAYOUT.MSIX_TABLE + v * 16 + 12, 0, 4);
  }
  w(COMMON.DEVICE_STATUS, STATUS.ACKNOWLEDGE | STATUS.DRIVER, 1);
  w(COMMON.DRIVER_FEATURE_SELECT, 0, 4);
  w(COMMON.DRIVER_FEATURE, Number(features & 0xffffffffn), 4);
  w(COMMON.DRIVER_FEATURE_SELECT, 1, 4);
  w(COMMON.DRIVER_FEATURE, Number(features >> 32n), 4);
  w(COMMON.DEVICE_STATUS, STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK, 1);
  queues.forEach((q, i) => {
    w(COMMON.QUEUE_SELECT, i, 2);
    w(COMMON.QUEUE_SIZE, q.size, 2);
    w(COMMON.QUEUE_MSIX_VECTOR, i + 1, 2);
    for (const [reg, gpa] of [[COMMON.QUEUE_DESC, q.desc], [COMMON.QUEUE_DRIVER, q.avail], [COMMON.QUEUE_DEVICE, q.used]] as const) {
      w(reg, gpa, 4);
      w(reg + 4, 0, 4);
    }
    w(COMMON.QUEUE_ENABLE, 1, 2);
  });
  w(COMMON.DEVICE_STATUS, STATUS.ACKNOWLEDGE | STATUS.DRIVER | STATUS.FEATURES_OK | STATUS.DRIVER_OK, 1);
  return bar;
}
