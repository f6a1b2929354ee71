// The VM's virtio devices, main-thread side: opens and locks the disk images, lays the functions
// out on PCI bus 0 (drives first, then NICs on their TAPs, then the entropy device), registers each queue's notify address
// with KVM_IOEVENTFD, gives each MSI-X vector an irqfd, and runs the I/O worker that serves them all.
import { Worker } from 'node:worker_threads';
import { rmSync } from 'node:fs';
import * as libc from '../sys/libc.js';
import type { VmFd } from '../kvm/kvm.js';
import { MsiVectorAllocator } from '../kvm/msi-routes.js';
import type { MemoryRegion } from '../memory/guest-memory.js';
import { FileDisk } from '../devices/virtio/block/file-disk.js';
import { blockConfig, blockFeatures } from '../devices/virtio/block/config.js';
import { BLOCK_METRICS, readBlockMetrics, type BlockDeviceMetrics } from '../devices/virtio/block/device.js';
import { BAR_LAYOUT, createVirtioPciDevice, VIRTIO_ID, type VirtioPciDeviceSpec } from '../devices/virtio/pci-device.js';
import { RNG_FEATURES, RNG_METRICS } from '../devices/virtio/rng.js';
import type { VirtioPciWiring } from '../devices/virtio/pci-bar.js';
import { LAYOUT } from '../arch/x86_64/layout.js';
import { randomBytes } from 'node:crypto';
import { TypevisorError } from '../base/errors.js';
import { openTap, type Tap } from '../sys/tap.js';
import { addToBridge, ensureBridge, ensureDhcp, ensureNat } from './host-network.js';
import { parseCidr } from './ip-address.js';
import { runtimeRoot } from './runtime-dir.js';
import { formatMac, isLinkUp, NET_FEATURES, netConfig, parseMac, randomMac, setLinkUp } from '../devices/virtio/net/config.js';
import { NET_METRICS, readNetMetrics, type NetDeviceMetrics } from '../devices/virtio/net/device.js';
import { isGuestCid, vsockConfig } from '../devices/virtio/vsock/packet.js';
import { readVsockMetrics, VSOCK_FEATURES, VSOCK_METRICS, type VsockDeviceMetrics } from '../devices/virtio/vsock/device.js';
import {
  BALLOON_CONFIG_WRITABLE, balloonFeatures, BALLOON_METRICS, BALLOON_PAGE, BALLOON_QUEUES, balloonConfig, readBalloonMetrics, setBalloonTarget,
  type BalloonMetrics, type BalloonOptions,
} from '../devices/virtio/balloon.js';
import { fitsUnixPath, listenUnix, MAX_UNIX_PATH_BYTES } from '../sys/unix-socket.js';
import { PORT_SUFFIX_BYTES } from './vsock-unix.js';

export interface DiskOptions {
  path: string;
  readOnly?: boolean;
}

/** For callers that check a MAC before building anything (the CLI). */
export { parseMac } from '../devices/virtio/net/config.js';

export interface NetOptions {
  /** The host TAP interface to attach to (created if absent). */
  tap?: string;
  /** Or: a bridge (created if absent) that gets a TAP of ours as a port. */
  bridge?: string;
  /** The guest's MAC address, aa:bb:cc:dd:ee:ff (default: a random locally administered one). */
  mac?: string;
  /** With a bridge: the host's address on it, e.g. 10.0.0.1/24 (given to the bridge if it has none). */
  hostAddress?: string;
  /**
   * The guest's address, set by its kernel before init (`ip=`): static A.B.C.D/N, or 'dhcp' — from
   * a dnsmasq the VMM runs on the bridge (it needs the bridge's host address). One NIC per VM.
   */
  address?: string;
  /** The guest's default gateway with a static address (default: the bridge's host address). */
  gateway?: string;
  /** NAT (masquerade) from the bridge's subnet to the host's other interfaces (default off). */
  nat?: boolean;
}

export type { BalloonOptions } from '../devices/virtio/balloon.js';

export interface VsockOptions {
  /** The guest's context ID (default 3). */
  cid?: number;
  /** The host side: a Unix socket (Firecracker's hybrid vsock), created here; host port P is reached at PATH_P. */
  socketPath: string;
}

/** Queue size we offer: the driver may use fewer. */
const QUEUE_SIZE = 256;

export interface IoWorkerData {
  vmFd: number;
  memoryAddr: number;
  memoryBytes: number;
  regions: MemoryRegion[];
  kickSignal: number;
  stop: SharedArrayBuffer;
  /** Float64 [0]: the I/O thread's wake-ups with work (epoll returns with ready fds). */
  loopStats: SharedArrayBuffer;
  wakeFd: number;
  blocks: { wiring: VirtioPciWiring; path: string; fd: number; sizeBytes: number; readOnly: boolean; serial: string; metrics: SharedArrayBuffer }[];
  nets: { wiring: VirtioPciWiring; tapFd: number; tapName: string; metrics: SharedArrayBuffer }[];
  rng?: { wiring: VirtioPciWiring; metrics: SharedArrayBuffer } | undefined;
  vsock?: { wiring: VirtioPciWiring; listenFd: number; socketPath: string; cid: number; metrics: SharedArrayBuffer } | undefined;
  balloon?: { wiring: VirtioPciWiring; memfd: number; metrics: SharedArrayBuffer } | undefined;
}

export interface RngMetrics {
  requests: number;
  bytes: number;
  notifications: number;
  errors: number;
}

export class VirtioDevices {
  readonly wirings: VirtioPciWiring[] = [];
  private readonly disks: FileDisk[] = [];
  private readonly metrics: SharedArrayBuffer[] = [];
  private rng: { wiring: VirtioPciWiring; metrics: SharedArrayBuffer } | undefined;
  private vsock: { wiring: VirtioPciWiring; listenFd: number; socketPath: string; cid: number; metrics: SharedArrayBuffer } | undefined;
  private balloon: { wiring: VirtioPciWiring; config: Uint8Array; metrics: SharedArrayBuffer } | undefined;
  private readonly nets: { wiring: VirtioPciWiring; tap: Tap; mac: string; metrics: SharedArrayBuffer }[] = [];
  private readonly fds: number[] = [];
  private readonly stop = new SharedArrayBuffer(4);
  private readonly loopStats = new SharedArrayBuffer(8);
  private wakeFd = -1;
  /** The I/O worker's thread id, once it runs (for its CPU time). */
  ioTid: number | undefined;
  private worker: Worker | undefined;
  private readonly msiVectors: MsiVectorAllocator;
  private exited: Promise<string | undefined> | undefined;

  /** Opens every image first (so a bad one fails before anything else is made), then builds the devices. */
  constructor(private readonly vm: VmFd, disks: readonly DiskOptions[], opts: { rng: boolean; nets?: readonly NetOptions[]; vsock?: VsockOptions | undefined; balloon?: BalloonOptions | undefined }) {
    this.msiVectors = new MsiVectorAllocator(vm, () => this.eventfd());
    try {
      for (const d of disks) this.disks.push(FileDisk.open(d.path, { readOnly: d.readOnly ?? false }));
      for (const disk of this.disks) {
        this.wirings.push(this.add({
          deviceId: VIRTIO_ID.BLOCK, classCode: [0x01, 0x80, 0x00], features: blockFeatures(disk.readOnly),
          queueMaxSizes: [QUEUE_SIZE], deviceConfig: blockConfig(disk.sizeBytes),
        }));
        this.metrics.push(new SharedArrayBuffer(8 * BLOCK_METRICS.SLOTS));
      }
      for (const n of opts.nets ?? []) {
        const mac = n.mac === undefined ? randomMac((k) => randomBytes(k)) : parseMac(n.mac);
        if (!mac) throw new TypevisorError('INVALID_ARGUMENT', `MAC address '${n.mac}' is not a unicast aa:bb:cc:dd:ee:ff`);
        if ((n.tap === undefined) === (n.bridge === undefined)) throw new TypevisorError('INVALID_ARGUMENT', 'a NIC needs either a tap or a bridge');
        if (n.bridge === undefined && (n.address === 'dhcp' || n.nat || n.hostAddress !== undefined)) {
          throw new TypevisorError('INVALID_ARGUMENT', 'DHCP, NAT and a host address need a bridge (--net bridge=NAME,…), not a TAP of your own');
        }
        if (n.bridge !== undefined) {
          ensureBridge(n.bridge, n.hostAddress === undefined ? undefined : parseCidr(n.hostAddress, 'the host address'));
          if (n.address === 'dhcp') ensureDhcp(n.bridge, runtimeRoot());
          if (n.nat) ensureNat(n.bridge);
        }
        const tap = openTap(n.tap ?? `tv${process.pid}n${this.nets.length}`);
        this.fds.push(tap.fd);
        if (n.bridge !== undefined) addToBridge(tap.name, n.bridge);
        const wiring = this.add({
          deviceId: VIRTIO_ID.NET, classCode: [0x02, 0x00, 0x00], features: NET_FEATURES, queueMaxSizes: [QUEUE_SIZE, QUEUE_SIZE], deviceConfig: netConfig(mac),
        });
        this.wirings.push(wiring);
        this.nets.push({ wiring, tap, mac: formatMac(mac), metrics: new SharedArrayBuffer(8 * NET_METRICS.SLOTS) });
      }
      if (opts.rng) {
        const wiring = this.add({ deviceId: VIRTIO_ID.RNG, classCode: [0xff, 0x00, 0x00], features: RNG_FEATURES, queueMaxSizes: [QUEUE_SIZE], deviceConfig: new Uint8Array() });
        this.wirings.push(wiring);
        this.rng = { wiring, metrics: new SharedArrayBuffer(8 * RNG_METRICS.SLOTS) };
      }
      if (opts.vsock) {
        const cid = opts.vsock.cid ?? 3;
        if (!isGuestCid(cid)) throw new TypevisorError('INVALID_ARGUMENT', `vsock CID ${cid} is not a guest CID (3 … 4294967294)`);
        if (!fitsUnixPath(opts.vsock.socketPath, PORT_SUFFIX_BYTES)) {
          throw new TypevisorError('INVALID_ARGUMENT', `the vsock socket path ${opts.vsock.socketPath} is too long: with a host port's suffix (_PORT) it must fit ${MAX_UNIX_PATH_BYTES} bytes — choose one of at most ${MAX_UNIX_PATH_BYTES - PORT_SUFFIX_BYTES}`);
        }
        const listenFd = listenUnix(opts.vsock.socketPath);
        this.fds.push(listenFd);
        const wiring = this.add({ deviceId: VIRTIO_ID.VSOCK, classCode: [0xff, 0x00, 0x00], features: VSOCK_FEATURES, queueMaxSizes: [QUEUE_SIZE, QUEUE_SIZE, QUEUE_SIZE], deviceConfig: vsockConfig(cid) });
        this.wirings.push(wiring);
        this.vsock = { wiring, listenFd, socketPath: opts.vsock.socketPath, cid, metrics: new SharedArrayBuffer(8 * VSOCK_METRICS.SLOTS) };
      }
      if (opts.balloon) {
        const config = balloonConfig();
        const wiring = this.add({
          deviceId: VIRTIO_ID.BALLOON, classCode: [0xff, 0x00, 0x00], features: balloonFeatures(opts.balloon),
          queueMaxSizes: Array.from({ length: BALLOON_QUEUES }, () => QUEUE_SIZE), deviceConfig: config, deviceConfigWritable: BALLOON_CONFIG_WRITABLE,
        });
        this.wirings.push(wiring);
        this.balloon = { wiring, config, metrics: new SharedArrayBuffer(8 * BALLOON_METRICS.SLOTS) };
      }
      this.wakeFd = this.eventfd();
    } catch (e) {
      this.close();
      throw e;
    }
  }

  /** The next function: its BAR after the previous ones in the 32-bit window, an eventfd per queue. */
  private add(spec: Omit<VirtioPciDeviceSpec, 'barAddress'>): VirtioPciWiring {
    const barAddress = LAYOUT.PCI_MMIO32 + this.wirings.length * BAR_LAYOUT.SIZE;
    const state = createVirtioPciDevice({ ...spec, barAddress });
    const controlFd = this.eventfd();
    const queueFds = spec.queueMaxSizes.map(() => this.eventfd());
    const vectors = this.msiVectors.allocate(state.msixVectors);
    // A 16-bit write of the queue index to the notify address signals the queue's eventfd in the kernel.
    queueFds.forEach((fd, q) => this.vm.ioeventfd(fd, barAddress + BAR_LAYOUT.NOTIFY, 2, { datamatch: BigInt(q) }));
    return { state, controlFd, queueFds, vectors };
  }

  private eventfd(): number {
    const fd = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
    this.fds.push(fd);
    return fd;
  }

  /** Starts the I/O worker (only if there are devices). */
  start(memory: { vmFd: number; memfd: number; memoryAddr: number; memoryBytes: number; regions: MemoryRegion[]; kickSignal: number }, onFailure: (why: string) => void): void {
    if (this.wirings.length === 0) return;
    const { memfd, ...shared } = memory;
    const data: IoWorkerData = {
      ...shared, stop: this.stop, loopStats: this.loopStats, wakeFd: this.wakeFd,
      blocks: this.disks.map((d, i) => ({
        wiring: this.wirings[i]!, path: d.path, fd: d.fileDescriptor, sizeBytes: d.sizeBytes, readOnly: d.readOnly,
        serial: `typevisor-vd${String.fromCharCode(97 + (i % 26))}`, metrics: this.metrics[i]!,
      })),
      nets: this.nets.map((n) => ({ wiring: n.wiring, tapFd: n.tap.fd, tapName: n.tap.name, metrics: n.metrics })),
      rng: this.rng,
      vsock: this.vsock,
      balloon: this.balloon && { wiring: this.balloon.wiring, memfd, metrics: this.balloon.metrics },
    };
    const worker = new Worker(new URL('./io-worker.js', import.meta.url), { workerData: data });
    this.worker = worker;
    this.exited = new Promise((resolve) => {
      let failure: string | undefined;
      worker.on('message', (m: { type: string; failure?: string; tid?: number }) => {
        if (m.type === 'io-exit') failure = m.failure;
        if (m.type === 'io-ready') this.ioTid = m.tid;
      });
      worker.on('error', (e) => { failure = e.message; });
      worker.on('exit', () => {
        if (failure) onFailure(failure);
        resolve(failure);
      });
    });
  }

  deviceMetrics(): (BlockDeviceMetrics & { path: string })[] {
    return this.disks.map((d, i) => ({ path: d.path, ...readBlockMetrics(this.metrics[i]!) }));
  }

  /** Takes NIC `index`'s link down or up, as a cable pulled or plugged: the guest's driver is told. */
  setLinkUp(index: number, up: boolean): void {
    const nic = this.nets[index];
    if (!nic) throw new TypevisorError('INVALID_ARGUMENT', `the VM has no NIC ${index} (it has ${this.nets.length})`);
    setLinkUp(nic.wiring.state.deviceConfig, up);
    libc.eventfdSignal(nic.wiring.controlFd);
  }

  netMetrics(): (NetDeviceMetrics & { tap: string; mac: string; linkUp: boolean })[] {
    return this.nets.map((n) => ({ tap: n.tap.name, mac: n.mac, linkUp: isLinkUp(n.wiring.state.deviceConfig), ...readNetMetrics(n.metrics) }));
  }

  rngMetrics(): RngMetrics | undefined {
    if (!this.rng) return undefined;
    const m = new Float64Array(this.rng.metrics);
    return { requests: m[RNG_METRICS.REQUESTS]!, bytes: m[RNG_METRICS.BYTES]!, notifications: m[RNG_METRICS.NOTIFICATIONS]!, errors: m[RNG_METRICS.ERRORS]! };
  }

  vsockMetrics(): (VsockDeviceMetrics & { cid: number; socketPath: string }) | undefined {
    if (!this.vsock) return undefined;
    return { cid: this.vsock.cid, socketPath: this.vsock.socketPath, ...readVsockMetrics(this.vsock.metrics) };
  }

  balloonMetrics(): BalloonMetrics | undefined {
    return this.balloon && readBalloonMetrics(this.balloon.config, this.balloon.metrics);
  }

  /** Asks the guest to give back memory until the balloon holds `mib` MiB (0: all given back); new statistics come with it. */
  setBalloonTarget(mib: number): void {
    if (!this.balloon) throw new TypevisorError('INVALID_ARGUMENT', 'this VM has no balloon device — create it with balloon: true (--balloon)');
    setBalloonTarget(this.balloon.config, Math.round((mib * 2 ** 20) / BALLOON_PAGE));
    libc.eventfdSignal(this.balloon.wiring.controlFd);
  }

  /** Asks the balloon driver for fresh statistics (they arrive in balloonMetrics().stats). */
  requestBalloonStats(): void {
    if (this.balloon) libc.eventfdSignal(this.balloon.wiring.controlFd);
  }

  /** How many times the I/O thread woke up with work: its CPU time over this is the cost of one wake-up. */
  get ioWakeups(): number {
    return new Float64Array(this.loopStats)[0]!;
  }

  /** Tells the worker to stop (synchronous: usable from a process 'exit' hook). */
  requestStop(): void {
    if (!this.worker) return;
    Atomics.store(new Int32Array(this.stop), 0, 1);
    libc.eventfdSignal(this.wakeFd);
  }

  /** Stops the worker and waits for it; then the images can be closed. */
  async stopWorker(): Promise<void> {
    if (!this.worker) return;
    this.requestStop();
    await this.exited;
    this.worker = undefined;
  }

  /** Closes eventfds and images (dropping their locks). Call after stopWorker(). */
  close(): void {
    for (const fd of this.fds.splice(0)) libc.close(fd);
    for (const d of this.disks) d.close();
    // The socket file is ours (bound here): a later VM may bind the same path.
    if (this.vsock) rmSync(this.vsock.socketPath, { force: true });
  }
}
