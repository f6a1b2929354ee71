// `typevisor image create`: an empty ext4 image that e2fsck accepts, and bad input → one clear
// message, a non-zero exit and no file left behind. (The Debian image is built and booted in
// test/e2e/debian-image.test.ts.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli } from '../helpers/cli.js';
import { tempDir } from '../helpers/native.js';

test('image create NAME --size 64M: a sparse ext4 image that checks clean', async () => {
  const dir = tempDir('typevisor-image-');
  const img = join(dir, 'data.img');
  const r = await runCli(['image', 'create', img, '--size', '64M']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), img);
  assert.equal(statSync(img).size, 64 * 2 ** 20);
  assert.ok(statSync(img).blocks * 512 < 16 * 2 ** 20, 'sparse');
  execFileSync('e2fsck', ['-fn', img], { stdio: 'pipe' });
  assert.match(execFileSync('dumpe2fs', ['-h', img], { stdio: ['ignore', 'pipe', 'ignore'] }).toString(), /volume name:\s+typevisor-data/);
  assert.deepEqual(readdirSync(dir), ['data.img'], 'no temporary file left');
});

test('image create with bad input: clear errors, nothing written', async () => {
  const dir = tempDir('typevisor-image-');
  const existing = join(dir, 'taken.img');
  writeFileSync(existing, 'keep me');
  const cases: [string[], RegExp][] = [
    [['image', 'create', join(dir, 'a.img')], /--size is required/],
    [['image', 'create', join(dir, 'a.img'), '--size', 'lots'], /--size 'lots' is not a size/],
    [['image', 'create', join(dir, 'a.img'), '--size', '1M'], /--size 1M is too small .* at least 16M/],
    [['image', 'create', join(dir, 'a.img'), '--size', '1G', '--from', 'ubuntu'], /--from 'ubuntu' is not known/],
    [['image', 'create', existing, '--size', '1G'], /already exists — remove it or choose another name/],
    [['image', 'create', join(dir, 'no', 'such', 'a.img'), '--size', '1G'], /the directory .*no\/such does not exist/],
    [['image', 'create'], /give exactly one image NAME/],
    [['image', 'resize', 'x'], /unknown image command 'resize'/],
  ];
  for (const [args, message] of cases) {
    const r = await runCli(args);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
  // debootstrap missing (a fresh cache, so the tree must be built): the fix is named.
  const r = await runCli(['image', 'create', join(dir, 'deb.img'), '--size', '2G', '--from', 'debian'],
    { env: { ...process.env, XDG_CACHE_HOME: join(dir, 'cache'), TYPEVISOR_DEBOOTSTRAP: 'no-such-debootstrap' } });
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /debootstrap is not installed — run: apt-get install debootstrap/);
  assert.deepEqual(readdirSync(dir).filter((n) => n.startsWith('deb.img')), [], 'no image, no partial image');
  assert.equal(statSync(existing).size, 7, 'the existing file is untouched');
});
