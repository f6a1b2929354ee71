// Module dependency resolution for the Debian cloud guest's initramfs, and .modinfo parsing on a
// real ELF object built by gcc.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { moduleDepends, resolveModules } from '../../src/guest/debian-cloud-initramfs.js';
import { tempDir } from '../helpers/native.js';

test('dependencies load first, each once; built-in modules are skipped; - and _ are one', () => {
  const deps: Record<string, string[] | 'builtin'> = {
    virtio_pci: ['virtio_pci_modern_dev', 'virtio', 'virtio_ring'],
    virtio_pci_modern_dev: [],
    virtio: [],
    virtio_ring: [],
    virtio_blk: ['virtio', 'virtio_ring'],
    virtio_rng: ['virtio', 'virtio_ring'],
    ext4: 'builtin',
  };
  const order = resolveModules(['virtio_pci', 'virtio_blk', 'virtio-rng', 'ext4'], (n) => {
    const d = deps[n];
    if (d === undefined) throw new Error(`asked for unknown ${n}`);
    return d;
  });
  assert.deepEqual(order, ['virtio_pci_modern_dev', 'virtio', 'virtio_ring', 'virtio_pci', 'virtio_blk', 'virtio_rng']);
  assert.throws(() => resolveModules(['a'], (n) => (n === 'a' ? ['b'] : ['a'])), /loop: a → b → a/);
});

test('depends= comes from the .modinfo section of a real ELF object', () => {
  const dir = tempDir();
  const src = join(dir, 'm.c');
  writeFileSync(src, `
    __attribute__((section(".modinfo"), used)) static const char a[] = "license=GPL";
    __attribute__((section(".modinfo"), used)) static const char b[] = "depends=virtio,virtio_ring,net-failover";
    const char *decoy = "depends=not_this_one";
  `);
  execFileSync('gcc', ['-c', '-o', join(dir, 'm.o'), src]);
  assert.deepEqual(moduleDepends(new Uint8Array(readFileSync(join(dir, 'm.o')))), ['virtio', 'virtio_ring', 'net_failover']);
  writeFileSync(src, '__attribute__((section(".modinfo"), used)) static const char a[] = "depends=";\n');
  execFileSync('gcc', ['-c', '-o', join(dir, 'n.o'), src]);
  assert.deepEqual(moduleDepends(new Uint8Array(readFileSync(join(dir, 'n.o')))), []);
  assert.throws(() => moduleDepends(new Uint8Array(100), 'junk.ko'), /junk.ko is not a usable kernel module/);
  const truncated = new Uint8Array(readFileSync(join(dir, 'm.o'))).subarray(0, 200);
  assert.throws(() => moduleDepends(truncated), /out of range/);
});
