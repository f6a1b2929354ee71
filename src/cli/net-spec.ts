// `--net` specs: `tap=NAME` or `bridge=NAME` with options, or `default` — Typevisor's own bridge
// (tvbr0, host 10.213.0.1/24) with an address from DHCP; `,nat` adds NAT to the host's uplink.
import { TypevisorError } from '../base/errors.js';
import { isInterfaceName } from '../sys/tap.js';
import { parseMac, type NetOptions } from '../vmm/virtio-devices.js';
import { isIpv4, parseCidr } from '../vmm/ip-address.js';

export const DEFAULT_BRIDGE = 'tvbr0';
export const DEFAULT_HOST_ADDRESS = '10.213.0.1/24';

export const NET_HELP = `  --net SPEC        a virtio-net NIC (eth0, eth1, … in order; repeatable). Needs root or CAP_NET_ADMIN.
                    default[,nat]      Typevisor's bridge ${DEFAULT_BRIDGE} (host ${DEFAULT_HOST_ADDRESS}), address by DHCP
                    tap=NAME[,…]       the host TAP NAME (created if absent)
                    bridge=NAME[,…]    a new TAP on the bridge NAME (created if absent; VMs on one
                                       bridge reach each other)
                    options: mac=MAC, ip=A.B.C.D/N (static guest address, set by its kernel) or
                    dhcp (from a dnsmasq on the bridge), gw=A.B.C.D, host=A.B.C.D/N (the bridge's
                    own address), nat (masquerade the bridge's subnet to the host's uplink)`;

const usage = (spec: string, why: string): TypevisorError =>
  new TypevisorError('INVALID_ARGUMENT', `--net '${spec}': ${why} — see 'typevisor run --help'`);

export function parseNetSpec(spec: string): NetOptions {
  const [head, ...options] = spec.split(',');
  const nic: NetOptions = {};
  if (head === 'default') {
    nic.bridge = DEFAULT_BRIDGE;
    nic.hostAddress = DEFAULT_HOST_ADDRESS;
    nic.address = 'dhcp';
  } else {
    const m = /^(tap|bridge)=(.*)$/.exec(head ?? '');
    if (!m) throw usage(spec, 'write default, tap=NAME or bridge=NAME, then options');
    if (!isInterfaceName(m[2]!)) throw usage(spec, `'${m[2]}' is not an interface name (1–15 letters, digits, _ . -)`);
    if (m[1] === 'tap') nic.tap = m[2]!; else nic.bridge = m[2]!;
  }
  for (const o of options) {
    const [key, value] = o.includes('=') ? [o.slice(0, o.indexOf('=')), o.slice(o.indexOf('=') + 1)] : [o, undefined];
    switch (key) {
      case 'mac':
        if (value === undefined || !parseMac(value)) throw usage(spec, `MAC address '${value ?? ''}' is not a unicast aa:bb:cc:dd:ee:ff`);
        nic.mac = value;
        break;
      case 'ip':
        parseCidr(value ?? '', 'ip=');
        nic.address = value!;
        break;
      case 'dhcp':
        if (value !== undefined) throw usage(spec, 'dhcp takes no value');
        nic.address = 'dhcp';
        break;
      case 'gw':
        if (value === undefined || !isIpv4(value)) throw usage(spec, `gw '${value ?? ''}' is not an IPv4 address`);
        nic.gateway = value;
        break;
      case 'host':
        parseCidr(value ?? '', 'host=');
        nic.hostAddress = value!;
        break;
      case 'nat':
        if (value !== undefined) throw usage(spec, 'nat takes no value');
        nic.nat = true;
        break;
      default:
        throw usage(spec, `unknown option '${o}'`);
    }
  }
  if (nic.tap !== undefined && (nic.address === 'dhcp' || nic.nat || nic.hostAddress !== undefined)) {
    throw usage(spec, 'dhcp, nat and host= need a bridge (bridge=NAME or default), not a TAP');
  }
  if (nic.gateway !== undefined && (nic.address === undefined || nic.address === 'dhcp')) throw usage(spec, 'gw= goes with a static ip=');
  return nic;
}
