// The MMIO of a virtio-pci function's BAR 0, served on whichever vCPU thread exited: common
// configuration, ISR, device configuration, MSI-X table and PBA. Queue notifications normally
// never exit (KVM_IOEVENTFD signals the queue's eventfd in the kernel); a notify write that does
// reach us (e.g. the guest moved the BAR) signals the same eventfd by hand.
import * as libc from '../../sys/libc.js';
import type { BusDevice } from '../bus-device.js';
import { MsixTable } from '../pci/msix.js';
import { VirtioPciCommonConfig } from './pci-common.js';
import { BAR_LAYOUT, type VirtioPciState } from './pci-device.js';

/** What a thread needs to serve a virtio function: its shared state and the eventfds of its I/O side. */
export interface VirtioPciWiring {
  state: VirtioPciState;
  /** Signalled when the driver starts (DRIVER_OK) or resets the device. */
  controlFd: number;
  /** One per queue, signalled on a notification. */
  queueFds: number[];
  /** One per MSI-X vector: the irqfd that raises it and its GSI. */
  vectors: { fd: number; gsi: number }[];
}

export function virtioBarDevice(w: VirtioPciWiring): BusDevice {
  const common = new VirtioPciCommonConfig(w.state.common).device({
    activate: () => libc.eventfdSignal(w.controlFd),
    reset: () => libc.eventfdSignal(w.controlFd),
  });
  const msix = new MsixTable(w.state.msix, w.state.msixVectors);
  // Unmasking a vector with an interrupt pending: the I/O side delivers it (see onControl).
  const table = msix.tableDevice((vector) => {
    if (msix.isPending(vector) && !msix.message(vector).masked) libc.eventfdSignal(w.controlFd);
  });
  const pba = msix.pbaDevice();
  const isr = new Int32Array(w.state.isr);
  const region = (offset: number): [BusDevice | undefined, number] => {
    if (offset < BAR_LAYOUT.ISR) return [common, offset - BAR_LAYOUT.COMMON];
    if (offset >= BAR_LAYOUT.MSIX_PBA) return [pba, offset - BAR_LAYOUT.MSIX_PBA];
    if (offset >= BAR_LAYOUT.MSIX_TABLE) return [table, offset - BAR_LAYOUT.MSIX_TABLE];
    return [undefined, 0];
  };
  return {
    read: (offset, data) => {
      const [dev, at] = region(offset);
      if (dev) return dev.read(at, data);
      data.fill(0);
      if (offset === BAR_LAYOUT.ISR) {
        // Reading the ISR status clears it (§4.1.4.5.1).
        data[0] = Atomics.exchange(isr, 0, 0) & 0xff;
      } else if (offset >= BAR_LAYOUT.DEVICE && offset < BAR_LAYOUT.NOTIFY) {
        const at2 = offset - BAR_LAYOUT.DEVICE;
        if (at2 + data.length <= w.state.deviceConfig.length) data.set(w.state.deviceConfig.subarray(at2, at2 + data.length));
      }
    },
    write: (offset, data) => {
      const [dev, at] = region(offset);
      if (dev) return dev.write(at, data);
      if (offset === BAR_LAYOUT.NOTIFY && data.length >= 2) {
        const queue = data[0]! | (data[1]! << 8);
        const fd = w.queueFds[queue];
        if (fd !== undefined) libc.eventfdSignal(fd);
      }
      // Only the bytes the device declares writable take a write (the balloon's `actual`); other writes land nowhere.
      const [from, to] = w.state.deviceConfigWritable;
      const at3 = offset - BAR_LAYOUT.DEVICE;
      if (at3 >= from && at3 + data.length <= to) w.state.deviceConfig.set(data, at3);
    },
  };
}
