// The host side of a VM's NIC in bridge mode: a bridge (created if missing, and left for other
// VMs when we end) and our TAP as one of its ports. iproute2's `ip` does the netlink work.
import { spawnSync } from 'node:child_process';
import { TypevisorError } from '../base/errors.js';
import { isInterfaceName } from '../sys/tap.js';

function ip(args: readonly string[]): { ok: boolean; stdout: string; stderr: string } {
  const r = spawnSync('ip', args, { encoding: 'utf8', env: { ...process.env, PATH: `${process.env['PATH'] ?? ''}:/usr/sbin:/sbin` } });
  if (r.error) throw new TypevisorError('INVALID_ARGUMENT', `cannot run 'ip' to set up the host network: ${r.error.message} — install iproute2`, { cause: r.error });
  return { ok: r.status === 0, stdout: r.stdout, stderr: r.stderr.trim() };
}

/** Creates bridge `name` unless an interface of that name exists (which must then be a bridge), and brings it up. */
export function ensureBridge(name: string): void {
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
  const up = ip(['link', 'set', 'dev', name, 'up']);
  if (!up.ok) throw new TypevisorError('INVALID_ARGUMENT', `cannot bring the bridge ${name} up: ${up.stderr}`);
}

/** Makes TAP `tap` a port of `bridge` and brings it up. */
export function addToBridge(tap: string, bridge: string): void {
  for (const args of [['link', 'set', 'dev', tap, 'master', bridge], ['link', 'set', 'dev', tap, 'up']]) {
    const r = ip(args);
    if (!r.ok) throw new TypevisorError('INVALID_ARGUMENT', `cannot attach the TAP ${tap} to the bridge ${bridge}: ${r.stderr}`);
  }
}
