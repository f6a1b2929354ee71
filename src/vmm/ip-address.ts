// IPv4 addresses as users write them (10.0.0.2/24) and the kernel's `ip=` parameter that sets a
// guest NIC up before init (Documentation/admin-guide/nfs/nfsroot.rst: "ip=<client-ip>:<server-ip>:
// <gw-ip>:<netmask>:<hostname>:<device>:<autoconf>").
import { TypevisorError } from '../base/errors.js';

export interface Cidr {
  address: string;
  prefix: number;
}

export function isIpv4(text: string): boolean {
  const parts = text.split('.');
  return parts.length === 4 && parts.every((p) => /^(0|[1-9]\d{0,2})$/.test(p) && Number(p) <= 255);
}

/** `A.B.C.D/N` (N 1–32); throws INVALID_ARGUMENT naming `what` otherwise. */
export function parseCidr(text: string, what = 'address'): Cidr {
  const m = /^([\d.]+)\/(\d{1,2})$/.exec(text);
  const prefix = m ? Number(m[2]) : NaN;
  if (!m || !isIpv4(m[1]!) || !(prefix >= 1 && prefix <= 32)) {
    throw new TypevisorError('INVALID_ARGUMENT', `${what} '${text}' is not an IPv4 address with a prefix length, e.g. 10.0.0.2/24`);
  }
  return { address: m[1]!, prefix };
}

function mask(prefix: number): string {
  const bits = 2 ** 32 - 2 ** (32 - prefix);
  return [24, 16, 8, 0].map((s) => Math.floor(bits / 2 ** s) % 256).join('.');
}

/** The guest's `ip=` option for NIC `device`: a static address (and gateway), or DHCP. */
export function kernelIpOption(device: string, config: { address: Cidr; gateway?: string | undefined } | 'dhcp'): string {
  if (config === 'dhcp') return `ip=:::::${device}:dhcp`;
  if (config.gateway !== undefined && !isIpv4(config.gateway)) throw new TypevisorError('INVALID_ARGUMENT', `gateway '${config.gateway}' is not an IPv4 address`);
  return `ip=${config.address.address}::${config.gateway ?? ''}:${mask(config.address.prefix)}::${device}:off`;
}
