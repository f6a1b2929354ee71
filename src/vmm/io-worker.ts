// The I/O worker thread: an event loop over the virtio devices' eventfds (queue notifications arrive
// through KVM_IOEVENTFD without a vCPU exit) and their backends' fds (TAPs, vsock sockets), requests
// carried out in place on guest memory, interrupts raised through irqfd (an eventfd write; this
// thread owns the GSI routing table). One thread serves every device of the VM.
import { parentPort, workerData } from 'node:worker_threads';
import * as libc from '../sys/libc.js';
import { VmFd } from '../kvm/kvm.js';
import { MsiRouter } from '../kvm/msi-routes.js';
import { GuestMemory } from '../memory/guest-memory.js';
import { FileDisk } from '../devices/virtio/block/file-disk.js';
import { BlockDeviceRuntime } from '../devices/virtio/block/device.js';
import { RngDeviceRuntime } from '../devices/virtio/rng.js';
import { NetDeviceRuntime } from '../devices/virtio/net/device.js';
import { VsockDeviceRuntime } from '../devices/virtio/vsock/device.js';
import { BalloonDeviceRuntime } from '../devices/virtio/balloon.js';
import { TapBackend } from './tap-backend.js';
import { UnixVsockHost } from './vsock-unix.js';
import { IoLoop, EPOLL } from './io-loop.js';
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

const loop = new IoLoop();
loop.add(data.wakeFd, () => libc.eventfdRead(data.wakeFd));
const router = new MsiRouter(vm);
/** A device's MSI-X vectors raise through their irqfds; a vector without one (none today) is dropped. */
const signalsOf = (wiring: VirtioPciWiring): SignalMsi => (vector, address, msiData) => {
  const irq = wiring.vectors[vector];
  if (irq) router.raise(irq, address, msiData);
};

/** Puts a device's control and queue eventfds on the loop. */
function serve(runtime: VirtioDeviceRuntime, wiring: VirtioPciWiring): void {
  loop.add(wiring.controlFd, () => {
    libc.eventfdRead(wiring.controlFd);
    runtime.onControl();
  });
  wiring.queueFds.forEach((fd, q) => loop.add(fd, () => {
    libc.eventfdRead(fd);
    runtime.onNotify(q);
  }));
}

for (const b of data.blocks) {
  serve(new BlockDeviceRuntime(memory, b.wiring.state, FileDisk.fromFd(b.path, b.fd, b.sizeBytes, b.readOnly), b.serial, b.metrics, signalsOf(b.wiring)), b.wiring);
}
for (const n of data.nets) {
  let token = 0;
  let gone = false;
  const watch = (wanted: boolean): void => { if (!gone) loop.modify(n.tapFd, token, wanted ? EPOLL.IN : 0); };
  const runtime = new NetDeviceRuntime(memory, n.wiring.state, new TapBackend(n.tapFd, watch), n.metrics, signalsOf(n.wiring));
  // Not watched until the driver starts the device (the backend switches it on): a readable TAP
  // that nobody reads would wake a level-triggered epoll without end.
  token = loop.add(n.tapFd, (events) => {
    if (events & EPOLL.ERR) {
      // The interface was deleted under us: the fd stays in a bad state for good, and epoll reports
      // that whatever the mask — so it leaves the set. Frames the guest sends from now on are
      // dropped and counted; nothing more will arrive.
      console.error(`typevisor: the TAP ${n.tapName} is gone (deleted on the host?): its NIC receives nothing from now on`);
      loop.remove(n.tapFd, token);
      gone = true;
      return;
    }
    runtime.onBackendReadable();
  }, 0);
  serve(runtime, n.wiring);
}
if (data.rng) serve(new RngDeviceRuntime(memory, data.rng.wiring.state, data.rng.metrics, signalsOf(data.rng.wiring)), data.rng.wiring);

/** Periodic work (vsock time-outs), at most once a second. */
const tickers: (() => void)[] = [];
if (data.vsock) {
  const host = new UnixVsockHost(loop, data.vsock.listenFd, data.vsock.socketPath);
  const runtime = new VsockDeviceRuntime(memory, data.vsock.wiring.state, data.vsock.cid, host, data.vsock.metrics, signalsOf(data.vsock.wiring));
  host.attach(runtime);
  serve(runtime, data.vsock.wiring);
  tickers.push(() => { host.tick(); runtime.tick(); });
}
if (data.balloon) {
  const { memfd } = data.balloon;
  // Pages the guest gave up go back to the host: punched out of the memfd behind guest RAM (every
  // thread's view of them reads zeroes afterwards, as the balloon protocol allows).
  const discard = (gpa: number, len: number): boolean => {
    const offset = memory.offsetOf(gpa, len);
    return offset >= 0 && libc.fallocate(memfd, libc.FALLOC_FL_PUNCH_HOLE | libc.FALLOC_FL_KEEP_SIZE, offset, len) === 0;
  };
  serve(new BalloonDeviceRuntime(memory, data.balloon.wiring.state, discard, data.balloon.metrics, signalsOf(data.balloon.wiring)), data.balloon.wiring);
}

port.postMessage({ type: 'io-ready', tid: libc.gettid() });
let failure: string | undefined;
let lastTick = Date.now();
const wakeups = new Float64Array(data.loopStats);
try {
  while (Atomics.load(stop, 0) === 0) {
    if (loop.runOnce(1000) > 0) wakeups[0]!++;
    const now = Date.now();
    if (tickers.length > 0 && now - lastTick >= 1000) {
      lastTick = now;
      for (const t of tickers) t();
    }
  }
} catch (e) {
  failure = e instanceof Error ? e.message : String(e);
}
loop.close();
port.postMessage({ type: 'io-exit', failure });
