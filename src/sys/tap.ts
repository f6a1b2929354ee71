// TAP network devices (/dev/net/tun): a VM's NIC on the host. Opened with a virtio-net header on
// every frame (IFF_VNET_HDR, 12 bytes: the virtio 1.x layout), so checksum and segmentation
// offloads pass between guest and host kernel untouched (Documentation/networking/tuntap.rst).
import { TypevisorError } from '../base/errors.js';
import * as libc from './libc.js';

const IFF_TAP = 0x0002;
const IFF_NO_PI = 0x1000;
const IFF_VNET_HDR = 0x4000;
const IFNAMSIZ = 16;
/** _IOW('T', 202, int) and friends from <linux/if_tun.h>. */
const TUNSETIFF = 0x400454ca;
const TUNSETOFFLOAD = 0x400454d0;
const TUNSETVNETHDRSZ = 0x400454d8;
const O_NONBLOCK = 0o4000;
/** TUN_F_*: what the host may hand the guest unchecksummed or unsegmented. */
export const TUN_F = { CSUM: 0x01, TSO4: 0x02, TSO6: 0x04, TSO_ECN: 0x08 } as const;

export const VNET_HDR_BYTES = 12;

export interface Tap {
  fd: number;
  name: string;
}

/** Linux accepts up to 15 bytes without '/', ':' or whitespace; we keep to the portable subset. */
export function isInterfaceName(name: string): boolean {
  return /^[A-Za-z0-9_.-]{1,15}$/.test(name);
}

/** Attaches to TAP `name` (creating it if absent — it then lasts as long as the fd). */
export function openTap(name: string): Tap {
  if (!isInterfaceName(name)) {
    throw new TypevisorError('INVALID_ARGUMENT', `'${name}' is not a usable interface name (1–15 letters, digits, _ . -)`);
  }
  let fd: number;
  try {
    fd = libc.open('/dev/net/tun', libc.O_RDWR | libc.O_CLOEXEC | O_NONBLOCK);
  } catch (e) {
    throw new TypevisorError('INVALID_ARGUMENT', `cannot open /dev/net/tun for the TAP ${name}: ${(e as Error).message} — load the tun module (modprobe tun)`, { cause: e });
  }
  try {
    const ifr = new Uint8Array(40);
    ifr.set(new TextEncoder().encode(name).subarray(0, IFNAMSIZ - 1));
    new DataView(ifr.buffer).setUint16(IFNAMSIZ, IFF_TAP | IFF_NO_PI | IFF_VNET_HDR, true);
    try {
      libc.ioctl(fd, TUNSETIFF, ifr, 'TUNSETIFF');
    } catch (e) {
      const errno = e instanceof TypevisorError ? e.errno : undefined;
      const why = errno === 1 ? 'not permitted — it needs CAP_NET_ADMIN (run as root) or a TAP made for this user (ip tuntap add NAME mode tap user USER)'
        : errno === 16 ? 'it is in use by another VM or program — give this VM its own TAP'
          : errno === 22 ? 'an interface of that name exists and is not a TAP' : (e as Error).message;
      throw new TypevisorError('INVALID_ARGUMENT', `cannot attach to the TAP ${name}: ${why}`, { cause: e });
    }
    const size = new Uint8Array(4);
    new DataView(size.buffer).setInt32(0, VNET_HDR_BYTES, true);
    libc.ioctl(fd, TUNSETVNETHDRSZ, size, 'TUNSETVNETHDRSZ');
    setTapOffload(fd, 0);
    return { fd, name };
  } catch (e) {
    libc.close(fd);
    throw e;
  }
}

/** Which offloads the host may use towards the guest (what the guest's driver accepted). */
export function setTapOffload(fd: number, flags: number): void {
  libc.ioctlValue(fd, TUNSETOFFLOAD, flags, 'TUNSETOFFLOAD');
}
