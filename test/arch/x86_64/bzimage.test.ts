// Unit tests of bzImage parsing and loading on synthetic images, plus a real kernel when the host has one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { assertParsesOrFailsWith } from '../../helpers/errors.js';
import { GuestMemory } from '../../../src/memory/guest-memory.js';
import { bzImageEnd, loadBzImage, loadRealModeSetup, parseBzImage, runtimeStart } from '../../../src/arch/x86_64/bzimage.js';
import { buildZeroPage } from '../../../src/arch/x86_64/zero-page.js';
import { TypevisorError } from '../../../src/base/errors.js';
import { cacheRoot } from '../../../src/guest/cache-dir.js';

const MiB = 2 ** 20;

interface Fields { version?: number; setupSects?: number; xloadflags?: number; loadflags?: number; relocatable?: number; align?: number; pref?: bigint; initSize?: number; size?: number }

/** A bzImage-shaped file: a boot sector with a 2.15-style header, setup sectors, then the "protected-mode kernel". */
function syntheticBzImage(f: Fields = {}): Uint8Array {
  const img = new Uint8Array(f.size ?? 0x4000);
  const v = new DataView(img.buffer);
  img[0x1f1] = f.setupSects ?? 3;
  v.setUint16(0x1fe, 0xaa55, true);
  img.set([0xeb, 0x6a], 0x200); // jmp over the header: it ends at 0x26c
  v.setUint32(0x202, 0x53726448, true);
  v.setUint16(0x206, f.version ?? 0x020f, true);
  img[0x211] = f.loadflags ?? 0x01;
  v.setUint32(0x22c, 0x7fffffff, true);
  v.setUint32(0x230, f.align ?? 0x200000, true);
  img[0x234] = f.relocatable ?? 1;
  v.setUint16(0x236, f.xloadflags ?? 0x7f, true);
  v.setUint32(0x238, 0x7ff, true);
  v.setUint32(0x248, 0x100, true);
  v.setUint32(0x24c, 0x200, true);
  v.setBigUint64(0x258, f.pref ?? 0x1000000n, true);
  v.setUint32(0x260, f.initSize ?? 0x3378000, true);
  img[0x26c] = 0xcc; // setup code, not header
  const kernel = ((img[0x1f1] || 4) + 1) * 512;
  for (let i = kernel; i < img.length; i++) img[i] = i & 0xff;
  return img;
}

test('header fields, the 64-bit entry and the header bytes for the zero page', () => {
  const bz = parseBzImage(syntheticBzImage());
  assert.equal(bz.version, 0x20f);
  assert.equal(bz.kernelOffset, 0x800);
  assert.equal(bz.has64BitEntry, true);
  assert.equal(bz.entry64, 0x100200);
  assert.equal(bz.initrdAddrMax, 0x7fffffff);
  assert.equal(bz.kernelAlignment, 0x200000);
  assert.equal(bz.relocatable, true);
  assert.equal(bz.cmdlineSize, 0x7ff);
  assert.equal(bz.prefAddress, 0x1000000);
  assert.equal(bz.initSize, 0x3378000);
  assert.deepEqual([bz.payloadOffset, bz.payloadLength], [0x100, 0x200]);
  assert.equal(bz.setupHeader.length, 0x26c - 0x1f1);
  assert.equal(bz.setupHeader[0], 3);
});

test('setup_sects 0 means 4; kernels without XLF_KERNEL_64 are flagged for the 16-bit entry', () => {
  assert.equal(parseBzImage(syntheticBzImage({ setupSects: 0 })).kernelOffset, 0xa00);
  assert.equal(parseBzImage(syntheticBzImage({ xloadflags: 0x2 })).has64BitEntry, false);
  const old = parseBzImage(syntheticBzImage({ version: 0x0206 }));
  assert.deepEqual([old.has64BitEntry, old.initSize, old.prefAddress, old.payloadLength], [false, 0, 0x100000, 0]);
});

test('the kernel runs from pref_address (relocatable, aligned) and needs init_size there', () => {
  const bz = parseBzImage(syntheticBzImage());
  assert.equal(runtimeStart(bz), 0x1000000);
  assert.equal(bzImageEnd(syntheticBzImage(), bz), 0x1000000 + 0x3378000);
  assert.equal(runtimeStart(parseBzImage(syntheticBzImage({ pref: 0n, align: 0x1000000 }))), 0x1000000);
  assert.equal(runtimeStart(parseBzImage(syntheticBzImage({ relocatable: 0, pref: 0x2000000n }))), 0x2000000);
  const tiny = parseBzImage(syntheticBzImage({ pref: 0x100000n, align: 0x1000, initSize: 0x1000 }));
  assert.equal(bzImageEnd(syntheticBzImage(), tiny), 0x100000 + 0x4000 - 0x800);
});

test('loading puts the protected-mode code at 1 MiB and the setup sectors at 0x10000', () => {
  const img = syntheticBzImage({ initSize: 0x100000 });
  const bz = parseBzImage(img);
  const m = GuestMemory.anonymous(32 * MiB);
  assert.equal(loadBzImage(m, img, bz), 0x1100000);
  assert.deepEqual(m.read(0x100000, 0x3800), img.subarray(0x800));
  assert.equal(loadRealModeSetup(m, img, bz), 0x10000);
  assert.deepEqual(m.read(0x10000, 0x800), img.subarray(0, 0x800));
  assert.throws(() => loadBzImage(GuestMemory.anonymous(16 * MiB), img, bz), /needs 17 MiB/);
});

test('old, foreign and inconsistent files are refused with KERNEL_FORMAT', () => {
  const refused = (img: Uint8Array, re: RegExp): void =>
    assert.throws(() => parseBzImage(img, '/k'), (e) => e instanceof TypevisorError && e.code === 'KERNEL_FORMAT' && re.test(e.message));
  refused(syntheticBzImage({ version: 0x0204 }), /boot protocol 2\.04; Typevisor needs 2\.06/);
  refused(new Uint8Array(0x1000), /\/k .*HdrS/);
  refused(new Uint8Array(0x100), /too short/);
  refused(syntheticBzImage({ loadflags: 0 }), /zImage/);
  refused(syntheticBzImage({ setupSects: 0x40 }), /setup code runs past/);
  refused(syntheticBzImage({ align: 0x300000 }), /power of two/);
  refused(syntheticBzImage({ pref: 1n << 40n }), /above 4 GiB/);
  refused(syntheticBzImage({ size: 0xa00 }), /payload runs past/);
});

test('property: random bytes with a valid magic never crash the parser', () => {
  fc.assert(fc.property(fc.uint8Array({ minLength: 0, maxLength: 0x1000 }), (bytes) => {
    const img = new Uint8Array(bytes);
    if (img.length >= 0x206) new DataView(img.buffer).setUint32(0x202, 0x53726448, true);
    assertParsesOrFailsWith('KERNEL_FORMAT', () => parseBzImage(img));
  }), { numRuns: 2000 });
});

/** bzImages on this host: /boot/vmlinuz-* and the Debian cloud kernel `typevisor guest` caches. */
function hostBzImages(): string[] {
  const found: string[] = [];
  const add = (dir: string, pick: (name: string) => boolean): void => {
    if (existsSync(dir)) for (const n of readdirSync(dir)) if (pick(n)) found.push(join(dir, n));
  };
  add('/boot', (n) => n.startsWith('vmlinuz'));
  const debian = join(cacheRoot(), 'debian-cloud');
  if (existsSync(debian)) for (const v of readdirSync(debian)) add(join(debian, v), (n) => n === 'vmlinuz');
  return found;
}

const real = hostBzImages()[0];
test('a real bzImage parses: 64-bit entry, whole header, init_size and room for it', { skip: real === undefined && 'no bzImage on this host' }, () => {
  const img = new Uint8Array(readFileSync(real!));
  const bz = parseBzImage(img, real);
  assert.ok(bz.version >= 0x20c, `protocol ${bz.version.toString(16)}`);
  assert.equal(bz.has64BitEntry, true);
  assert.equal(bz.setupHeader.length, 0x202 + img[0x201]! - 0x1f1);
  assert.ok(bz.initSize > 0 && bz.kernelOffset + bz.payloadOffset + bz.payloadLength <= img.length);
  const end = bzImageEnd(img, bz);
  assert.ok(end >= runtimeStart(bz) + bz.initSize);
  const m = GuestMemory.anonymous(Math.ceil(end / MiB) * MiB);
  loadBzImage(m, img, bz);
  assert.deepEqual(m.read(0x100000, 512), img.subarray(bz.kernelOffset, bz.kernelOffset + 512));
  const bp = buildZeroPage({ cmdlineGpa: 0x20000, cmdlineSize: 20, e820: [], setupHeader: bz.setupHeader });
  assert.deepEqual(bp.subarray(0x230, 0x238), img.subarray(0x230, 0x238));
});
