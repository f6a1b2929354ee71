// The host side of a VM's NIC in bridge mode: a bridge (created if missing, and left for other
// VMs when we end) with an optional host address, our TAP as one of its ports, DHCP for the
// bridge's subnet from Debian's dnsmasq (one per bridge and network namespace, left running for
// the next VM), and optional NAT (masquerade) from the bridge's subnet to the host's other
// interfaces. iproute2's `ip` and iptables do the netlink and netfilter work.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';
import { TypevisorError } from '../base/errors.js';
import { isInterfaceName } from '../sys/tap.js';
import { parseCidr, type Cidr } from './ip-address.js';

const SBIN_PATH = `${process.env['PATH'] ?? ''}:/usr/sbin:/sbin`;

function run(cmd: string, args: readonly string[], install: string): { ok: boolean; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { ...process.env, PATH: SBIN_PATH } });
  if (r.error) throw new TypevisorError('INVALID_ARGUMENT', `cannot run '${cmd}' to set up the host network: ${r.error.message} — install ${install}`, { cause: r.error });
  return { ok: r.status === 0, stdout: r.stdout, stderr: r.stderr.trim() };
}
const ip = (args: readonly string[]): ReturnType<typeof run> => run('ip', args, 'iproute2');

/** Creates bridge `name` unless an interface of that name exists (which must then be a bridge), and brings it up. */
export function ensureBridge(name: string, hostAddress?: Cidr): void {
  if (!isInterfaceName(name)) throw new TypevisorError('INVALID_ARGUMENT', `'${name}' is not a usable bridge name (1–15 letters, digits, _ . -)`);
  const shown = ip(['-d', '-o', 'link', 'show', 'dev', name]);
  if (shown.ok) {
    // `ip -d` details of a bridge start "bridge forward_delay …" (a port's say "bridge_slave").
    if (!/\sbridge forward_delay\s/.test(shown.stdout)) {
      throw new TypevisorError('INVALID_ARGUMENT', `the interface ${name} exists and is not a bridge — choose another --net bridge= name`);
    }
  } else {
    const made = ip(['link', 'add', 'name', name, 'type', 'bridge']);
    // Another VM may have made it at the same moment.
    if (!made.ok && !ip(['link', 'show', 'dev', name]).ok) {
      throw new TypevisorError('INVALID_ARGUMENT', `cannot create the bridge ${name}: ${made.stderr} — it needs root (CAP_NET_ADMIN)`);
    }
  }
  if (hostAddress) {
    const current = bridgeAddress(name);
    if (!current) {
      const added = ip(['addr', 'add', `${hostAddress.address}/${hostAddress.prefix}`, 'dev', name]);
      if (!added.ok && !bridgeAddress(name)) throw new TypevisorError('INVALID_ARGUMENT', `cannot give the bridge ${name} the address ${hostAddress.address}/${hostAddress.prefix}: ${added.stderr}`);
    } else if (current.address !== hostAddress.address || current.prefix !== hostAddress.prefix) {
      throw new TypevisorError('INVALID_ARGUMENT', `the bridge ${name} already has the address ${current.address}/${current.prefix}, not ${hostAddress.address}/${hostAddress.prefix} — leave host= out or use that address`);
    }
  }
  const up = ip(['link', 'set', 'dev', name, 'up']);
  if (!up.ok) throw new TypevisorError('INVALID_ARGUMENT', `cannot bring the bridge ${name} up: ${up.stderr}`);
}

/** The bridge's first IPv4 address, if it has one. */
export function bridgeAddress(name: string): Cidr | undefined {
  const r = ip(['-4', '-o', 'addr', 'show', 'dev', name]);
  const m = /\binet (\d+\.\d+\.\d+\.\d+\/\d+)/.exec(r.stdout);
  return m ? parseCidr(m[1]!) : undefined;
}

/** Makes TAP `tap` a port of `bridge` and brings it up. */
export function addToBridge(tap: string, bridge: string): void {
  for (const args of [['link', 'set', 'dev', tap, 'master', bridge], ['link', 'set', 'dev', tap, 'up']]) {
    const r = ip(args);
    if (!r.ok) throw new TypevisorError('INVALID_ARGUMENT', `cannot attach the TAP ${tap} to the bridge ${bridge}: ${r.stderr}`);
  }
}

/** Where a bridge's dnsmasq keeps its pid and leases: per network namespace (a bridge name is only unique inside one). */
function dhcpDir(runtimeRoot: string, bridge: string): string {
  let ns = 'netns';
  try {
    ns = readlinkSync('/proc/self/ns/net').replace(/\D/g, '');
  } catch {
    // No /proc/self/ns: one namespace is all there is.
  }
  return join(runtimeRoot, 'net', `${ns}-${bridge}`);
}

function running(pidFile: string): boolean {
  try {
    const pid = Number(readFileSync(pidFile, 'utf8').trim());
    process.kill(pid, 0);
    return Number.isInteger(pid) && pid > 0;
  } catch {
    return false;
  }
}

/**
 * DHCP on `bridge` for its subnet (addresses .100 up to .199 of a /24, or the upper half of a
 * smaller net), the bridge as router and name server, from a dnsmasq that is started if none
 * serves this bridge yet.
 */
export function ensureDhcp(bridge: string, runtimeRoot: string): void {
  const subnet = bridgeAddress(bridge);
  if (!subnet) throw new TypevisorError('INVALID_ARGUMENT', `DHCP on the bridge ${bridge} needs a host address on it — add host=ADDRESS/PREFIX to --net`);
  const dir = dhcpDir(runtimeRoot, bridge);
  const pidFile = join(dir, 'dnsmasq.pid');
  if (running(pidFile)) return;
  mkdirSync(dir, { recursive: true });
  const [first, last] = dhcpRange(subnet);
  const r = run('dnsmasq', [
    `--interface=${bridge}`, '--bind-interfaces', '--except-interface=lo', `--pid-file=${pidFile}`, `--dhcp-leasefile=${join(dir, 'leases')}`,
    `--dhcp-range=${first},${last},${prefixToMask(subnet.prefix)},12h`, `--dhcp-option=option:router,${subnet.address}`, '--dhcp-authoritative',
    '--no-hosts', '--no-resolv', '--conf-file=/dev/null', `--log-facility=${join(dir, 'dnsmasq.log')}`,
  ], 'dnsmasq-base (apt-get install dnsmasq-base)');
  if (!r.ok && !running(pidFile)) throw new TypevisorError('INVALID_ARGUMENT', `cannot start dnsmasq for DHCP on ${bridge}: ${r.stderr}`);
  if (!existsSync(pidFile)) throw new TypevisorError('INVALID_ARGUMENT', `dnsmasq for ${bridge} did not start (no pid file at ${pidFile})`);
}

function ipv4ToNumber(a: string): number {
  return a.split('.').reduce((n, part) => n * 256 + Number(part), 0);
}

function numberToIpv4(n: number): string {
  return [24, 16, 8, 0].map((s) => Math.floor(n / 2 ** s) % 256).join('.');
}

export function prefixToMask(prefix: number): string {
  return numberToIpv4(prefix === 0 ? 0 : (2 ** 32 - 2 ** (32 - prefix)));
}

/** The DHCP pool of a subnet: .100–.199 of a /24 (or larger), the upper half of the hosts of a smaller one. */
export function dhcpRange(subnet: Cidr): [string, string] {
  const size = 2 ** (32 - subnet.prefix);
  const base = Math.floor(ipv4ToNumber(subnet.address) / size) * size;
  if (size >= 256) return [numberToIpv4(base + 100), numberToIpv4(base + 199)];
  if (size < 8) throw new TypevisorError('INVALID_ARGUMENT', `the subnet ${subnet.address}/${subnet.prefix} is too small for DHCP (a /29 or larger)`);
  return [numberToIpv4(base + size / 2), numberToIpv4(base + size - 2)];
}

/** The network address of a CIDR (10.1.2.3/24 → 10.1.2.0/24). */
export function networkOf(c: Cidr): string {
  const size = 2 ** (32 - c.prefix);
  return `${numberToIpv4(Math.floor(ipv4ToNumber(c.address) / size) * size)}/${c.prefix}`;
}

function iptables(args: readonly string[]): ReturnType<typeof run> {
  return run('iptables', ['-w', ...args], 'iptables');
}

/** Adds the rule unless it is there (-C checks). */
function ensureRule(table: string, chain: string, rule: readonly string[]): void {
  if (iptables(['-t', table, '-C', chain, ...rule]).ok) return;
  const r = iptables(['-t', table, '-A', chain, ...rule]);
  if (!r.ok) throw new TypevisorError('INVALID_ARGUMENT', `cannot add the NAT rule (iptables -t ${table} -A ${chain} ${rule.join(' ')}): ${r.stderr}`);
}

/** Masquerades the bridge's subnet towards every other interface, and lets it be forwarded. */
export function ensureNat(bridge: string): void {
  const subnet = bridgeAddress(bridge);
  if (!subnet) throw new TypevisorError('INVALID_ARGUMENT', `NAT from the bridge ${bridge} needs a host address on it — add host=ADDRESS/PREFIX to --net`);
  const net = networkOf(subnet);
  const forward = run('sysctl', ['-q', '-w', 'net.ipv4.ip_forward=1'], 'procps');
  if (!forward.ok) throw new TypevisorError('INVALID_ARGUMENT', `cannot enable IPv4 forwarding for NAT: ${forward.stderr}`);
  ensureRule('nat', 'POSTROUTING', ['-s', net, '!', '-o', bridge, '-j', 'MASQUERADE']);
  // Hosts whose FORWARD policy is DROP (Docker sets it) would otherwise drop the VMs' traffic.
  ensureRule('filter', 'FORWARD', ['-i', bridge, '!', '-o', bridge, '-j', 'ACCEPT']);
  ensureRule('filter', 'FORWARD', ['-o', bridge, '-m', 'conntrack', '--ctstate', 'RELATED,ESTABLISHED', '-j', 'ACCEPT']);
}
