// The initramfs of the Debian cloud guest: Debian's cloud kernel has its virtio drivers as modules,
// so its initramfs carries them (with their dependencies, from each module's .modinfo), loads them
// in dependency order, and then runs Typevisor's standard /init on busybox.
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join, relative } from 'node:path';
import { TypevisorError } from '../base/errors.js';
import { writeCpio, type CpioEntry } from './cpio.js';

/** What a microVM guest needs: virtio over PCI for disks, network, console, entropy, balloon, vsock; ext4. */
export const DEBIAN_CLOUD_MODULES = [
  'virtio_pci', 'virtio_blk', 'virtio_net', 'virtio_console', 'virtio-rng', 'virtio_balloon',
  'vmw_vsock_virtio_transport', 'ext4',
] as const;

/** Module names treat '-' and '_' alike (as modprobe does). */
const canonical = (name: string): string => name.replace(/-/g, '_');

/** The `depends=` list of a module, read from its ELF .modinfo section. */
export function moduleDepends(ko: Uint8Array, what = 'module'): string[] {
  const v = new DataView(ko.buffer, ko.byteOffset, ko.byteLength);
  const bad = (why: string): never => { throw new TypevisorError('GUEST_BUILD_FAILED', `${what} is not a usable kernel module: ${why}`); };
  if (ko.length < 64 || v.getUint32(0) !== 0x7f454c46 || ko[4] !== 2 || ko[5] !== 1) bad('not a 64-bit little-endian ELF file');
  const shoff = Number(v.getBigUint64(0x28, true));
  const shentsize = v.getUint16(0x3a, true);
  const shnum = v.getUint16(0x3c, true);
  const shstrndx = v.getUint16(0x3e, true);
  if (shentsize < 64 || shoff + shnum * shentsize > ko.length || shstrndx >= shnum) bad('section headers out of range');
  const section = (i: number): { name: number; offset: number; size: number } => {
    const at = shoff + i * shentsize;
    const offset = Number(v.getBigUint64(at + 0x18, true));
    const size = Number(v.getBigUint64(at + 0x20, true));
    if (offset + size > ko.length) bad(`section ${i} out of range`);
    return { name: v.getUint32(at, true), offset, size };
  };
  const strtab = section(shstrndx);
  const nameOf = (off: number): string => {
    const start = strtab.offset + off;
    let end = start;
    while (end < strtab.offset + strtab.size && ko[end] !== 0) end++;
    return Buffer.from(ko.subarray(start, end)).toString('latin1');
  };
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    if (nameOf(s.name) !== '.modinfo') continue;
    const entries = Buffer.from(ko.subarray(s.offset, s.offset + s.size)).toString('latin1').split('\0');
    const dep = entries.find((e) => e.startsWith('depends='))?.slice('depends='.length) ?? '';
    return dep === '' ? [] : dep.split(',').map(canonical);
  }
  return bad('no .modinfo section');
}

/** Every *.ko under `dir`, by canonical module name → path relative to `base`. */
function indexModules(dir: string, base: string, index = new Map<string, string>()): Map<string, string> {
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) indexModules(path, base, index);
    else if (entry.name.endsWith('.ko')) index.set(canonical(entry.name.slice(0, -3)), relative(base, path));
  }
  return index;
}

/**
 * The modules to load, dependencies first. Modules that are built into the kernel
 * (modules.builtin) need nothing; a module that is neither is an error naming it.
 */
export function resolveModules(wanted: readonly string[], depends: (name: string) => string[] | 'builtin'): string[] {
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, chain: string[]): void => {
    const s = state.get(name);
    if (s === 'done') return;
    if (s === 'visiting') throw new TypevisorError('GUEST_BUILD_FAILED', `kernel modules depend on each other in a loop: ${[...chain, name].join(' → ')}`);
    state.set(name, 'visiting');
    const deps = depends(name);
    if (deps !== 'builtin') {
      for (const d of deps) visit(d, [...chain, name]);
      order.push(name);
    }
    state.set(name, 'done');
  };
  for (const w of wanted) visit(canonical(w), []);
  return order;
}

const WRAPPER_INIT = (version: string): string => `#!/bin/busybox sh
# Debian's cloud kernel has its virtio drivers as modules: load them (dependencies first, the order
# is in /etc/typevisor-modules), then hand over to Typevisor's standard /init.
while read -r m; do
  /bin/busybox insmod "/lib/modules/${version}/$m" || echo "typevisor: could not load $m" >&2
done < /etc/typevisor-modules
exec /init.typevisor
`;

export interface DebianCloudInitramfs {
  cpio: Uint8Array;
  /** Module files (relative to /lib/modules/<version>) in load order. */
  modules: string[];
}

/**
 * Builds the initramfs from an unpacked linux-image package (`root`), the host's busybox-static and
 * Typevisor's guest/init.
 */
export function buildDebianCloudInitramfs(opts: { root: string; version: string; busybox: string; init: string }): DebianCloudInitramfs {
  const moddir = join(opts.root, 'lib', 'modules', opts.version);
  const index = indexModules(join(moddir, 'kernel'), moddir);
  const builtin = new Set(readFileSync(join(moddir, 'modules.builtin'), 'utf8').split('\n')
    .filter((l) => l.endsWith('.ko')).map((l) => canonical(l.slice(l.lastIndexOf('/') + 1, -3))));
  const depsOf = new Map<string, string[]>();
  const order = resolveModules(DEBIAN_CLOUD_MODULES, (name) => {
    if (builtin.has(name)) return 'builtin';
    const path = index.get(name);
    if (!path) throw new TypevisorError('GUEST_BUILD_FAILED', `the Debian kernel ${opts.version} has no module ${name} (neither built in nor a .ko)`);
    const deps = moduleDepends(new Uint8Array(readFileSync(join(moddir, path))), path).filter((d) => !builtin.has(d));
    depsOf.set(name, deps);
    return deps;
  });
  const modules = order.map((n) => index.get(n)!);
  // modules.dep (kmod's format, deepest dependency last) so that modprobe works in the guest's shell.
  const closure = (n: string, seen = new Set<string>()): string[] => {
    for (const d of depsOf.get(n) ?? []) if (!seen.has(d)) { seen.add(d); closure(d, seen); }
    return order.filter((m) => seen.has(m)).reverse();
  };
  const modulesDep = order.map((n) => `${index.get(n)!}: ${closure(n).map((d) => index.get(d)!).join(' ')}`.trimEnd()).join('\n');

  const applets = execFileSync(opts.busybox, ['--list'], { encoding: 'utf8' }).split('\n').filter((a) => a !== '' && a !== 'busybox');
  const enc = new TextEncoder();
  const entries: CpioEntry[] = ['bin', 'sbin', 'usr', 'usr/bin', 'usr/sbin', 'proc', 'sys', 'dev', 'tmp', 'run', 'root', 'etc', 'lib', 'lib/modules']
    .map((path) => ({ kind: 'dir', path }));
  entries.push({ kind: 'file', path: 'bin/busybox', data: new Uint8Array(readFileSync(opts.busybox)), mode: 0o755 });
  for (const a of applets) entries.push({ kind: 'symlink', path: `bin/${a}`, target: 'busybox' });
  entries.push(
    { kind: 'file', path: 'init', data: enc.encode(WRAPPER_INIT(opts.version)), mode: 0o755 },
    { kind: 'file', path: 'init.typevisor', data: new Uint8Array(readFileSync(opts.init)), mode: 0o755 },
    { kind: 'file', path: 'etc/passwd', data: enc.encode('root:x:0:0:root:/root:/bin/sh\n') },
    { kind: 'file', path: 'etc/group', data: enc.encode('root:x:0:\n') },
    { kind: 'file', path: 'etc/typevisor-modules', data: enc.encode(`${modules.join('\n')}\n`) },
  );
  const dirs = new Set<string>();
  for (const m of modules) {
    const parts = `lib/modules/${opts.version}/${m}`.split('/');
    for (let i = 3; i < parts.length; i++) {
      const d = parts.slice(0, i).join('/');
      if (!dirs.has(d)) { dirs.add(d); entries.push({ kind: 'dir', path: d }); }
    }
    entries.push({ kind: 'file', path: `lib/modules/${opts.version}/${m}`, data: new Uint8Array(readFileSync(join(moddir, m))) });
  }
  for (const f of ['modules.builtin', 'modules.order']) {
    entries.push({ kind: 'file', path: `lib/modules/${opts.version}/${f}`, data: new Uint8Array(readFileSync(join(moddir, f))) });
  }
  entries.push({ kind: 'file', path: `lib/modules/${opts.version}/modules.dep`, data: enc.encode(`${modulesDep}\n`) });
  return { cpio: writeCpio(entries), modules };
}
