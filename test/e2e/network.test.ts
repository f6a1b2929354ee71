// End-to-end on real KVM: a virtio-net NIC on a TAP, all inside a network namespace this test
// creates and deletes (no traffic leaves it). The guest pings the host side and downloads a file
// from a host server (guest RX in bulk); the host fetches a file from a server in the guest (TCP
// from host to a guest listener, guest TX in bulk); every byte is checked by hash.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { kvmSkip } from '../helpers/kvm.js';
import { tempDir } from '../helpers/native.js';
import { TYPEVISOR_BIN } from '../helpers/cli.js';

const BOOT_MS = 300_000;
const NS = `tv-net-${process.pid}`;
const HOST_IP = '10.99.0.1';
const GUEST_IP = '10.99.0.2';
const MAC = '52:54:00:99:00:02';

/** The host side, run inside the namespace: /download sends a known file; /report fetches the guest's file and says what it got. */
const SERVER = `
import http from 'node:http';
import { createHash } from 'node:crypto';
const md5 = (b) => createHash('md5').update(b).digest('hex');
const download = Buffer.alloc(262144, 0); for (let i = 0; i < download.length; i++) download[i] = (i * 31 + 7) & 0xff;
const fetchGuest = () => new Promise((resolve, reject) => {
  http.get('http://${GUEST_IP}:8000/blob', (res) => { const parts = []; res.on('data', (d) => parts.push(d)); res.on('end', () => resolve(Buffer.concat(parts))); }).on('error', reject);
});
http.createServer((req, res) => {
  const parts = [];
  req.on('data', (d) => parts.push(d));
  req.on('end', async () => {
    if (req.url === '/download') { res.end(download); return; }
    const body = Buffer.concat(parts);
    let fetched = 'none';
    try { fetched = md5(await fetchGuest()); } catch (e) { fetched = 'error ' + e.message; }
    const report = { note: body.toString(), fetchedFromGuestMd5: fetched, downloadMd5: md5(download) };
    console.log(JSON.stringify(report));
    res.end('HOST-SAW ' + JSON.stringify(report) + '\\n');
  });
}).listen(8080, '${HOST_IP}', () => console.log('listening'));
`;

const ns = (...args: string[]): string => execFileSync('ip', ['netns', 'exec', NS, ...args], { encoding: 'utf8' });

test('virtio-net on a TAP in a test namespace: ping, download, host→guest TCP, the MAC we gave', { skip: kvmSkip, timeout: BOOT_MS }, async () => {
  const dir = tempDir('typevisor-net-');
  execFileSync('ip', ['netns', 'add', NS]);
  try {
    ns('ip', 'link', 'set', 'lo', 'up');
    ns('ip', 'tuntap', 'add', 'dev', 'tv0', 'mode', 'tap');
    ns('ip', 'addr', 'add', `${HOST_IP}/24`, 'dev', 'tv0');
    ns('ip', 'link', 'set', 'tv0', 'up');
    writeFileSync(join(dir, 'server.mjs'), SERVER);
    const server = spawn('ip', ['netns', 'exec', NS, process.execPath, join(dir, 'server.mjs')], { stdio: ['ignore', 'pipe', 'inherit'] });
    let serverOut = '';
    server.stdout.on('data', (d: Buffer) => { serverOut += d.toString(); });
    try {
      await new Promise<void>((resolve) => { const t = setInterval(() => { if (serverOut.includes('listening')) { clearInterval(t); resolve(); } }, 50); });
      const script = [
        'ip link set eth0 up', `ip addr add ${GUEST_IP}/24 dev eth0`,
        'echo "mac=$(cat /sys/class/net/eth0/address)"',
        `ping -c 2 -W 10 ${HOST_IP} >/dev/null && echo ping=ok`,
        'mkdir -p /tmp/www && head -c 200000 /dev/urandom > /tmp/www/blob && echo "blob=$(md5sum < /tmp/www/blob | cut -d" " -f1)"',
        'httpd -p 8000 -h /tmp/www',
        `wget -q -O /tmp/down http://${HOST_IP}:8080/download && echo "download=$(md5sum < /tmp/down | cut -d" " -f1)"`,
        `wget -q -O - --post-data from-guest http://${HOST_IP}:8080/report`,
      ].join('; ');
      const vmm = spawn('ip', ['netns', 'exec', NS, process.execPath, TYPEVISOR_BIN, 'run', '--net', `tap=tv0,mac=${MAC}`, '--', 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      vmm.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      vmm.stderr.on('data', (d: Buffer) => { err += d.toString(); });
      const status = await new Promise<number | null>((resolve) => vmm.on('close', resolve));
      console.log(`# guest output:\n${out.replace(/^/gm, '#   ')}`);
      assert.equal(status, 0, err.slice(-3000));
      const field = (name: string): string | undefined => new RegExp(`^${name}=(\\S+)$`, 'm').exec(out)?.[1];
      assert.equal(field('mac'), MAC, 'the guest sees the MAC we gave');
      assert.equal(field('ping'), 'ok', 'the guest pings the host side of the TAP');
      const saw = /^HOST-SAW (\{.*\})$/m.exec(out);
      assert.ok(saw, `the guest's request reached the host server and its answer came back\n${out}`);
      const report = JSON.parse(saw[1]!) as { note: string; fetchedFromGuestMd5: string; downloadMd5: string };
      assert.equal(report.note, 'from-guest');
      assert.equal(field('download'), report.downloadMd5, '256 KiB downloaded intact (guest RX)');
      assert.equal(report.fetchedFromGuestMd5, field('blob'), 'the host fetched 200 000 bytes from the guest\'s server intact (host → guest TCP, guest TX)');
    } finally {
      server.kill();
    }
  } finally {
    execFileSync('ip', ['netns', 'del', NS]);
  }
  assert.ok(!execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).includes(NS), 'the namespace is gone');
});

test('two VMs on one bridge (created by the first NIC that names it) reach each other', { skip: kvmSkip, timeout: BOOT_MS * 2 }, async () => {
  const ns2 = `${NS}-br`;
  execFileSync('ip', ['netns', 'add', ns2]);
  try {
    execFileSync('ip', ['netns', 'exec', ns2, 'ip', 'link', 'set', 'lo', 'up']);
    // VM a serves a file and waits for b's "done" page; b fetches a's file, then serves "done" for a while.
    const a = [
      'ip link set eth0 up', 'ip addr add 10.97.0.2/24 dev eth0',
      'mkdir -p /tmp/www && head -c 100000 /dev/urandom > /tmp/www/blob && echo "blob=$(md5sum < /tmp/www/blob | cut -d" " -f1)"',
      'httpd -p 8000 -h /tmp/www',
      'n=0; until wget -q -O /dev/null http://10.97.0.3:8000/done 2>/dev/null; do n=$((n+1)); [ $n -gt 240 ] && exit 3; sleep 1; done; echo a=done',
    ].join('; ');
    const b = [
      'ip link set eth0 up', 'ip addr add 10.97.0.3/24 dev eth0',
      'n=0; until wget -q -O /tmp/got http://10.97.0.2:8000/blob 2>/dev/null; do n=$((n+1)); [ $n -gt 240 ] && exit 3; sleep 1; done',
      'echo "got=$(md5sum < /tmp/got | cut -d" " -f1)"',
      'mkdir -p /tmp/www && echo done > /tmp/www/done && httpd -p 8000 -h /tmp/www && sleep 15',
    ].join('; ');
    const run = (script: string): Promise<{ status: number | null; out: string; err: string }> => new Promise((resolve) => {
      const p = spawn('ip', ['netns', 'exec', ns2, process.execPath, TYPEVISOR_BIN, 'run', '--quiet', '--net', 'bridge=tvbr0', '--', 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      p.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      p.stderr.on('data', (d: Buffer) => { err += d.toString(); });
      p.on('close', (status) => resolve({ status, out, err }));
    });
    const [ra, rb] = await Promise.all([run(a), run(b)]);
    console.log(`# a:\n${ra.out.replace(/^/gm, '#   ')}\n# b:\n${rb.out.replace(/^/gm, '#   ')}`);
    assert.equal(ra.status, 0, ra.err.slice(-2000));
    assert.equal(rb.status, 0, rb.err.slice(-2000));
    const blob = /^blob=(\S+)$/m.exec(ra.out)?.[1];
    assert.ok(blob);
    assert.ok(rb.out.includes(`got=${blob}`), 'b fetched a\'s file intact over the bridge');
    assert.ok(ra.out.includes('a=done'), 'a reached b over the bridge');
    // The bridge stays for other VMs; our TAPs went with the VMs.
    const links = execFileSync('ip', ['netns', 'exec', ns2, 'ip', '-o', 'link', 'show'], { encoding: 'utf8' });
    assert.match(links, /tvbr0/);
    assert.doesNotMatch(links, /master tvbr0/, 'no port left on the bridge');
  } finally {
    execFileSync('ip', ['netns', 'del', ns2]);
  }
});
