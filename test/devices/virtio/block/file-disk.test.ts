// The image-file backend on real files: I/O, durability calls, holes, locking between "VMs"
// (separate opens), and clear errors for bad images.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { FileDisk } from '../../../../src/devices/virtio/block/file-disk.js';
import { handleBlockRequest, SECTOR, VIRTIO_BLK_S, VIRTIO_BLK_T } from '../../../../src/devices/virtio/block/request.js';
import { GuestMemory } from '../../../../src/memory/guest-memory.js';
import { tempDir } from '../../../helpers/native.js';
import * as libc from '../../../../src/sys/libc.js';

const MiB = 2 ** 20;

function image(size = 4 * MiB): string {
  const path = join(tempDir('typevisor-img-'), 'disk.img');
  writeFileSync(path, '');
  truncateSync(path, size);
  return path;
}

test('reads and writes reach the file; a partial last sector is not addressable', () => {
  const path = image(MiB + 100);
  const disk = FileDisk.open(path, { readOnly: false });
  try {
    assert.equal(disk.sizeBytes, MiB);
    disk.write(5 * SECTOR, [Buffer.from('hello, '), Buffer.from('disk')]);
    disk.flush();
    assert.equal(readFileSync(path).subarray(5 * SECTOR, 5 * SECTOR + 11).toString(), 'hello, disk');
    const back = new Uint8Array(11);
    disk.read(5 * SECTOR, [back]);
    assert.equal(Buffer.from(back).toString(), 'hello, disk');
  } finally {
    disk.close();
  }
});

test('guest-memory buffers go through one preadv/pwritev; mixed and short transfers still land right', () => {
  const path = image(MiB);
  const disk = FileDisk.open(path, { readOnly: false });
  const len = 64 * 1024;
  const addr = libc.mmap(len, libc.PROT_READ | libc.PROT_WRITE, libc.MAP_PRIVATE | libc.MAP_ANONYMOUS, -1);
  try {
    const host = new Uint8Array(libc.hostView(addr, len));
    assert.equal(libc.hostAddressOf(host.subarray(100, 200)), addr + 100);
    assert.equal(libc.hostAddressOf(new Uint8Array(8)), undefined, 'ordinary JS memory has no host address');
    for (let i = 0; i < len; i++) host[i] = (i * 7) & 0xff;
    // Three scattered host buffers and a plain one in the middle (that part goes by hand).
    const parts = [host.subarray(0, 512), host.subarray(4096, 4096 + 1024), Uint8Array.from({ length: 512 }, () => 0xee), host.subarray(9000, 9000 + 2048)];
    disk.write(3 * SECTOR, parts);
    const expected = Buffer.concat(parts);
    assert.deepEqual(readFileSync(path).subarray(3 * SECTOR, 3 * SECTOR + expected.length), expected);
    const into = [host.subarray(20000, 20000 + 1536), host.subarray(30000, 30000 + 2560)];
    disk.read(3 * SECTOR, into);
    assert.deepEqual(Buffer.concat(into), expected);
    // The file shrinks under the VM: what is gone reads as zeroes, what is left reads back.
    truncateSync(path, 3 * SECTOR + 1000);
    into[0]!.fill(0x11);
    into[1]!.fill(0x11);
    disk.read(3 * SECTOR, into);
    assert.deepEqual(Buffer.concat(into).subarray(0, 1000), expected.subarray(0, 1000));
    assert.ok(Buffer.concat(into).subarray(1000).every((b) => b === 0));
  } finally {
    libc.munmap(addr, len);
    disk.close();
  }
});

test('discard and write-zeroes punch holes: the bytes read as zero and the file gives blocks back', () => {
  const path = image();
  writeFileSync(path, Buffer.alloc(4 * MiB, 0x5a));
  const before = statSync(path).blocks;
  const disk = FileDisk.open(path, { readOnly: false });
  try {
    disk.discard(MiB, MiB);
    disk.writeZeroes(2 * MiB, MiB, true);
    disk.writeZeroes(3 * MiB, 4096, false);
    const data = readFileSync(path);
    assert.equal(data.length, 4 * MiB, 'size kept');
    assert.ok(data.subarray(MiB, 3 * MiB + 4096).every((b) => b === 0));
    assert.equal(data[MiB - 1], 0x5a);
    assert.equal(data[3 * MiB + 4096], 0x5a);
    assert.ok(statSync(path).blocks < before, `blocks ${before} → ${statSync(path).blocks}`);
  } finally {
    disk.close();
  }
});

test('one writer at a time: a second read-write or read-only open is refused; readers share', () => {
  const path = image();
  const a = FileDisk.open(path, { readOnly: false });
  assert.throws(() => FileDisk.open(path, { readOnly: false }), /in use by another VM/);
  assert.throws(() => FileDisk.open(path, { readOnly: true }), /in use by another VM that writes it/);
  a.close();
  const r1 = FileDisk.open(path, { readOnly: true });
  const r2 = FileDisk.open(path, { readOnly: true });
  assert.throws(() => FileDisk.open(path, { readOnly: false }), /in use by another VM/);
  r1.close();
  r2.close();
  FileDisk.open(path, { readOnly: false }).close();
});

test('the lock holds across processes (flock on the image, as another VMM would take it)', () => {
  const path = image();
  const disk = FileDisk.open(path, { readOnly: false });
  try {
    const r = execFileSync('sh', ['-c', `flock -n -x ${path} true && echo got || echo busy`], { encoding: 'utf8' }).trim();
    assert.equal(r, 'busy');
  } finally {
    disk.close();
  }
  assert.equal(execFileSync('sh', ['-c', `flock -n -x ${path} true && echo got || echo busy`], { encoding: 'utf8' }).trim(), 'got');
});

test('bad images: missing, a directory, a device; the message names the file and the fix', () => {
  assert.throws(() => FileDisk.open('/nonexistent/disk.img', { readOnly: false }), /cannot open the disk image \/nonexistent\/disk.img: no such file — create it first/);
  const dir = join(tempDir(), 'adir');
  mkdirSync(dir);
  assert.throws(() => FileDisk.open(dir, { readOnly: true }), /adir: it is a directory|is not a regular file/);
  assert.throws(() => FileDisk.open('/dev/null', { readOnly: true }), /not a regular file/);
});

test('read-only drives refuse guest writes through the device; the file is unchanged', () => {
  const path = image(MiB);
  const disk = FileDisk.open(path, { readOnly: true });
  try {
    const m = GuestMemory.anonymous(0x10000);
    m.setU32(0x1000, VIRTIO_BLK_T.OUT);
    m.setU64(0x1008, 0n);
    m.fill(0x2000, 512, 0x77);
    const r = handleBlockRequest(m, { head: 0, readable: [{ gpa: 0x1000, len: 16 }, { gpa: 0x2000, len: 512 }], writable: [{ gpa: 0x3000, len: 1 }], writableBytes: 1 }, { backend: disk, serial: 'ro' });
    assert.equal(r.status, VIRTIO_BLK_S.IOERR);
    assert.ok(readFileSync(path).every((b) => b === 0));
  } finally {
    disk.close();
  }
});

test('an image that cannot be written is refused read-write with the fix named, and opens read-only', (t) => {
  const path = image();
  // An immutable file refuses writes even to root (file modes do not stop root).
  try {
    execFileSync('chattr', ['+i', path], { stdio: 'ignore' });
  } catch {
    t.skip('SKIPPED: chattr +i is not available on this file system');
    return;
  }
  try {
    const before = readFileSync(path);
    assert.throws(() => FileDisk.open(path, { readOnly: false }), /cannot be written — attach it read-only with ,ro/);
    const disk = FileDisk.open(path, { readOnly: true });
    assert.ok(disk.readOnly);
    disk.close();
    assert.ok(readFileSync(path).equals(before), 'nothing written');
  } finally {
    execFileSync('chattr', ['-i', path]);
  }
});
