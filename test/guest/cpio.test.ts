// The newc cpio writer: round trip through our reader, arbitrary entries, and GNU cpio reading it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { readCpio, writeCpio, type CpioEntry } from '../../src/guest/cpio.js';
import { tempDir } from '../helpers/native.js';

const enc = new TextEncoder();
const sample: CpioEntry[] = [
  { kind: 'dir', path: 'bin' },
  { kind: 'file', path: 'bin/busybox', data: enc.encode('\x7fELF...'), mode: 0o755 },
  { kind: 'symlink', path: 'bin/sh', target: 'busybox' },
  { kind: 'file', path: 'init', data: enc.encode('#!/bin/sh\necho hi\n'), mode: 0o755 },
  { kind: 'file', path: 'empty', data: new Uint8Array() },
];

test('newc: every entry comes back with its type, mode and bytes; 4-byte alignment; trailer', () => {
  const archive = writeCpio(sample);
  assert.equal(archive.length % 4, 0);
  const back = readCpio(archive);
  assert.deepEqual(back.map((e) => e.path), ['bin', 'bin/busybox', 'bin/sh', 'init', 'empty']);
  assert.equal(back[0]!.mode, 0o040755);
  assert.equal(back[1]!.mode, 0o100755);
  assert.equal(back[2]!.mode, 0o120777);
  assert.equal(Buffer.from(back[2]!.data).toString(), 'busybox');
  assert.equal(Buffer.from(back[3]!.data).toString(), '#!/bin/sh\necho hi\n');
  assert.equal(back[4]!.data.length, 0);
  assert.throws(() => writeCpio([{ kind: 'dir', path: '/abs' }]), /relative/);
  assert.throws(() => writeCpio([{ kind: 'file', path: 'a/../../etc', data: new Uint8Array() }]), /inside/);
  assert.throws(() => readCpio(archive.subarray(0, archive.length - 8)), /truncated|past the end/);
});

test('arbitrary names and contents round-trip (property)', () => {
  const name = fc.stringMatching(/^[a-z0-9_.-]{1,20}$/).filter((s) => s !== '.' && s !== '..');
  fc.assert(fc.property(fc.uniqueArray(fc.tuple(name, fc.uint8Array({ maxLength: 70 })), { selector: (t) => t[0], maxLength: 12 }), (files) => {
    const back = readCpio(writeCpio(files.map(([path, data]) => ({ kind: 'file', path, data }))));
    assert.deepEqual(back.map((e) => [e.path, Array.from(e.data)]), files.map(([p, d]) => [p, Array.from(d)]));
  }), { numRuns: 300 });
});

test('GNU cpio lists and extracts our archive', () => {
  const dir = tempDir();
  const file = join(dir, 'a.cpio');
  writeFileSync(file, writeCpio(sample));
  const listing = execFileSync('cpio', ['-it', '--quiet', '-F', file], { encoding: 'utf8' }).trim().split('\n');
  assert.deepEqual(listing, ['bin', 'bin/busybox', 'bin/sh', 'init', 'empty']);
  const out = join(dir, 'x');
  execFileSync('sh', ['-c', `mkdir ${out} && cd ${out} && cpio -id --quiet -F ${file}`]);
  assert.equal(execFileSync('cat', [join(out, 'init')], { encoding: 'utf8' }), '#!/bin/sh\necho hi\n');
  assert.equal(execFileSync('readlink', [join(out, 'bin/sh')], { encoding: 'utf8' }).trim(), 'busybox');
});
