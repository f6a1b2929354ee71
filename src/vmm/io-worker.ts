// The I/O worker thread: epoll over the virtio devices' eventfds (queue notifications arrive
// through KVM_IOEVENTFD without a vCPU exit), requests carried out in place on guest memory,
// interrupts raised through irqfd (an eventfd write; this thread owns the GSI routing table).
// One thread serves every device of the VM.
import { parentPort, workerData } from 'node:worker_threads';
import * as libc from '../sys/libc.js';
import { VmFd } from '../kvm/kvm.js';
import { MsiRouter } from '../kvm/msi-routes.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { FileDisk } from '../devices/virtio/block/file-disk.js';
import { BlockDeviceRuntime } from '../devices/virtio/block/device.js';
import { RngDeviceRuntime } from '../devices/virtio/rng.js';
import { NetDeviceRuntime } from '../devices/virtio/net/device.js';
import { TapBackend } from './tap-backend.js';
import type { VirtioDeviceRuntime, SignalMsi } from '../devices/virtio/device-runtime.js';
import type { VirtioPciWiring } from '../devices/virtio/pci-bar.js';
import type { IoWorkerData } from './virtio-devices.js';

const data = workerData as IoWorkerData;
const port = parentPort!;
const vm = new VmFd(data.vmFd);
const memory = new GuestMemory(new Uint8Array(libc.hostView(data.memoryAddr, data.memoryBytes)), data.regions);
const stop = new Int32Array(data.stop);
// No signal is meant for this thread (the vCPU kick is for vCPU threads).
libc.blockSignals([data.kickSignal]);

/** epoll data: device index × 1024 + (queue + 1), 0 for the device's control fd; WAKE for the stop fd. */
const WAKE = 0xffffff;
const ep = libc.epollCreate();
libc.epollAdd(ep, data.wakeFd, WAKE);
const router = new MsiRouter(vm);
/** A device's MSI-X vectors raise through their irqfds; a vector without one (none today) is dropped. */
const signalsOf = (wiring: VirtioPciWiring): SignalMsi => (vector, address, msiData) => {
  const irq = wiring.vectors[vector];
  if (irq) router.raise(irq, address, msiData);
};
/** epoll slot of a device's backend fd (a TAP): after any queue's. */
const BACKEND_SLOT = 1023;
const devices: { runtime: VirtioDeviceRuntime; wiring: VirtioPciWiring; backendFd?: number }[] = data.blocks.map((b) => ({
  runtime: new BlockDeviceRuntime(memory, b.wiring.state, FileDisk.fromFd(b.path, b.fd, b.sizeBytes, b.readOnly), b.serial, b.metrics, signalsOf(b.wiring)),
  wiring: b.wiring,
}));
for (const n of data.nets) {
  const id = devices.length * 1024 + BACKEND_SLOT;
  const runtime = new NetDeviceRuntime(memory, n.wiring.state, new TapBackend(n.tapFd, (wanted) => libc.epollSetInterest(ep, n.tapFd, id, wanted)), n.metrics, signalsOf(n.wiring));
  devices.push({ runtime, wiring: n.wiring, backendFd: n.tapFd });
}
if (data.rng) devices.push({ runtime: new RngDeviceRuntime(memory, data.rng.wiring.state, data.rng.metrics, signalsOf(data.rng.wiring)), wiring: data.rng.wiring });
devices.forEach(({ wiring, backendFd }, d) => {
  libc.epollAdd(ep, wiring.controlFd, d * 1024);
  if (backendFd !== undefined) libc.epollAdd(ep, backendFd, d * 1024 + BACKEND_SLOT);
  wiring.queueFds.forEach((fd, q) => libc.epollAdd(ep, fd, d * 1024 + q + 1));
});

port.postMessage({ type: 'io-ready', tid: libc.gettid() });
let failure: string | undefined;
try {
  while (Atomics.load(stop, 0) === 0) {
    for (const id of libc.epollWait(ep, 64, 1000)) {
      if (id === WAKE) { libc.eventfdRead(data.wakeFd); continue; }
      const dev = devices[Math.floor(id / 1024)];
      if (!dev) continue;
      const slot = id % 1024;
      if (slot === BACKEND_SLOT) {
        if (dev.runtime instanceof NetDeviceRuntime) dev.runtime.onBackendReadable();
      } else if (slot === 0) {
        libc.eventfdRead(dev.wiring.controlFd);
        dev.runtime.onControl();
      } else {
        libc.eventfdRead(dev.wiring.queueFds[slot - 1]!);
        dev.runtime.onNotify(slot - 1);
      }
    }
  }
} catch (e) {
  failure = e instanceof Error ? e.message : String(e);
}
libc.close(ep);
port.postMessage({ type: 'io-exit', failure });
