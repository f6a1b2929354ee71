// End-to-end on real KVM: a virtio-net NIC on a TAP, all inside a network namespace this test
// creates and deletes (no traffic leaves it). The guest pings the host side and downloads a file
// from a host server (guest RX in bulk); the host fetches a file from a server in the guest (TCP
// from host to a guest listener, guest TX in bulk); every byte is checked by hash. Then two
// detached VMs on one bridge: DHCP, a static address, traffic between them, NAT to an uplink.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { kvmSkip } from '../helpers/kvm.js';
import { tempDir } from '../helpers/native.js';
import { runCli, TYPEVISOR_BIN } from '../helpers/cli.js';

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
        // The kernel set the address (ip= from --net …,ip=) before init ran.
        'echo "addr=$(ip -4 -o addr show dev eth0 | grep -o "inet [0-9./]*" | cut -d" " -f2)"',
        'echo "mac=$(cat /sys/class/net/eth0/address)"',
        `ping -c 2 -W 10 ${HOST_IP} >/dev/null && echo ping=ok`,
        'mkdir -p /tmp/www && head -c 200000 /dev/urandom > /tmp/www/blob && echo "blob=$(md5sum < /tmp/www/blob | cut -d" " -f1)"',
        'httpd -p 8000 -h /tmp/www',
        `wget -q -O /tmp/down http://${HOST_IP}:8080/download && echo "download=$(md5sum < /tmp/down | cut -d" " -f1)"`,
        `wget -q -O - --post-data from-guest http://${HOST_IP}:8080/report`,
      ].join('; ');
      const vmm = spawn('ip', ['netns', 'exec', NS, process.execPath, TYPEVISOR_BIN, 'run', '--net', `tap=tv0,mac=${MAC},ip=${GUEST_IP}/24`, '--', 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      vmm.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      vmm.stderr.on('data', (d: Buffer) => { err += d.toString(); });
      const status = await new Promise<number | null>((resolve) => vmm.on('close', resolve));
      console.log(`# guest output:\n${out.replace(/^/gm, '#   ')}`);
      assert.equal(status, 0, err.slice(-3000));
      const field = (name: string): string | undefined => new RegExp(`^${name}=(\\S+)$`, 'm').exec(out)?.[1];
      assert.equal(field('mac'), MAC, 'the guest sees the MAC we gave');
      assert.equal(field('addr'), `${GUEST_IP}/24`, 'the static address from the kernel command line');
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

test('two detached VMs on one bridge: DHCP from our dnsmasq, a static address, VM-to-VM traffic, NAT to an uplink', { skip: kvmSkip, timeout: BOOT_MS * 3 }, async () => {
  // Two namespaces of our own: the VMs' host (bridge tvbr0, uplink up0) and a "world" behind the uplink.
  const vmHost = `${NS}-br`;
  const world = `${NS}-w`;
  const runtime = tempDir('typevisor-runtime-');
  const env = { ...process.env, TYPEVISOR_RUNTIME_DIR: runtime };
  const inNs = (n: string, ...args: string[]): string => execFileSync('ip', ['netns', 'exec', n, ...args], { encoding: 'utf8' });
  const cli = (args: string[], timeoutMs = 400_000): Promise<{ status: number | null; stdout: string; stderr: string }> => runCli(args, { env, timeoutMs });
  execFileSync('ip', ['netns', 'add', vmHost]);
  execFileSync('ip', ['netns', 'add', world]);
  let worldServer: ReturnType<typeof spawn> | undefined;
  try {
    execFileSync('ip', ['link', 'add', 'up0', 'netns', vmHost, 'type', 'veth', 'peer', 'name', 'wan0', 'netns', world]);
    inNs(vmHost, 'ip', 'link', 'set', 'lo', 'up');
    inNs(vmHost, 'ip', 'addr', 'add', '198.18.0.1/24', 'dev', 'up0');
    inNs(vmHost, 'ip', 'link', 'set', 'up0', 'up');
    inNs(vmHost, 'ip', 'route', 'add', 'default', 'via', '198.18.0.2');
    inNs(world, 'ip', 'link', 'set', 'lo', 'up');
    inNs(world, 'ip', 'addr', 'add', '198.18.0.2/24', 'dev', 'wan0');
    inNs(world, 'ip', 'link', 'set', 'wan0', 'up');
    // The world answers with the address it saw: behind NAT that is the uplink's, not the VM's.
    worldServer = spawn('ip', ['netns', 'exec', world, process.execPath, '-e',
      "require('http').createServer((q, r) => r.end('seen-from ' + q.socket.remoteAddress + '\\n')).listen(8080, '198.18.0.2', () => console.log('listening'))"], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => worldServer!.stdout!.on('data', () => resolve()));
    // Both VMs' processes run inside vmHost; exec reaches them through their vsock sockets (files, not network).
    const detach = (name: string, net: string): Promise<{ status: number | null; stdout: string; stderr: string }> => new Promise((resolve) => {
      const p = spawn('ip', ['netns', 'exec', vmHost, process.execPath, TYPEVISOR_BIN, 'run', '--detach', '--quiet', '--name', name, '--net', net], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
      p.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
      p.on('close', (status) => resolve({ status, stdout, stderr }));
    });
    const [a, b] = await Promise.all([detach('net-a', 'bridge=tvbr0,host=10.97.0.1/24,dhcp,nat'), detach('net-b', 'bridge=tvbr0,ip=10.97.0.3/24')]);
    assert.equal(a.status, 0, a.stderr);
    assert.equal(b.status, 0, b.stderr);
    try {
      const sh = async (vm: string, script: string): Promise<string> => {
        const r = await cli(['exec', vm, '--', 'sh', '-c', script]);
        assert.equal(r.status, 0, `${vm}: ${script}\n${r.stdout}${r.stderr}`);
        return r.stdout;
      };
      const addrOf = async (vm: string): Promise<string> => /inet (\d+\.\d+\.\d+\.\d+)\/24/.exec(await sh(vm, 'ip -4 -o addr show dev eth0'))?.[1] ?? 'none';
      const [addrA, addrB] = await Promise.all([addrOf('net-a'), addrOf('net-b')]);
      console.log(`# net-a got ${addrA} by DHCP; net-b has ${addrB}`);
      assert.match(addrA, /^10\.97\.0\.1\d\d$/, 'from the DHCP pool .100–.199');
      assert.equal(addrB, '10.97.0.3');
      assert.match(await sh('net-a', 'ip route show default'), /default via 10\.97\.0\.1 dev eth0/, 'DHCP gave the bridge as router');
      // Each serves a file; each fetches the other's; every byte checked.
      const serve = 'mkdir -p /tmp/www && head -c 150000 /dev/urandom > /tmp/www/blob && httpd -p 8000 -h /tmp/www && md5sum < /tmp/www/blob';
      const [md5A, md5B] = await Promise.all([sh('net-a', serve), sh('net-b', serve)]);
      const fetch = (ip: string): string => `wget -q -O - http://${ip}:8000/blob | md5sum`;
      assert.equal(await sh('net-a', fetch(addrB)), md5B, 'a fetched b\'s file intact');
      assert.equal(await sh('net-b', fetch(addrA)), md5A, 'b fetched a\'s file intact');
      assert.match(await sh('net-b', `ping -c 1 -W 5 ${addrA}`), /1 packets received/);
      assert.match(await sh('net-a', 'ping -c 1 -W 5 10.97.0.1'), /1 packets received/, 'the guest pings the host\'s bridge');
      // Through NAT: the world sees the uplink's address.
      assert.equal(await sh('net-a', 'wget -q -O - http://198.18.0.2:8080/'), 'seen-from 198.18.0.1\n');
      assert.match(inNs(vmHost, 'iptables', '-t', 'nat', '-S', 'POSTROUTING'), /-s 10\.97\.0\.0\/24 ! -o tvbr0 -j MASQUERADE/);
      // A TAP deleted on the host under a running VM: that NIC goes quiet, said once in the VMM's
      // log; the VM, its agent and the I/O thread carry on (no busy loop on the dead fd).
      const listed = JSON.parse((await cli(['ps', '--json'])).stdout) as { name: string; pid: number }[];
      const pidB = listed.find((v) => v.name === 'net-b')!.pid;
      inNs(vmHost, 'ip', 'link', 'del', `tv${pidB}n0`);
      assert.match(await sh('net-b', 'ping -c 1 -W 2 10.97.0.1 || true'), /0 packets received/);
      assert.equal(await sh('net-b', 'echo alive'), 'alive\n');
      const vmmLog = readFileSync(join(runtime, 'vms', 'net-b', 'vmm.log'), 'utf8');
      assert.match(vmmLog, new RegExp(`the TAP tv${pidB}n0 is gone`));
      assert.equal(vmmLog.split(`the TAP tv${pidB}n0 is gone`).length - 1, 1, 'said once: the dead fd no longer wakes the I/O thread');
      assert.doesNotMatch(vmmLog, /virtio device failed/);
    } finally {
      await Promise.all(['net-a', 'net-b'].map((n) => cli(['stop', n], 120_000)));
    }
    // The bridge stays for other VMs; our TAPs went with the VMs.
    const links = inNs(vmHost, 'ip', '-o', 'link', 'show');
    assert.match(links, /tvbr0/);
    assert.doesNotMatch(links, /master tvbr0/, 'no port left on the bridge');
  } finally {
    worldServer?.kill();
    // dnsmasq (started for the bridge) lives on in the namespace: end it before the namespace goes.
    for (const n of [vmHost, world]) {
      for (const pid of execFileSync('ip', ['netns', 'pids', n], { encoding: 'utf8' }).split('\n').filter((l) => l.trim() !== '')) {
        try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone already */ }
      }
      execFileSync('ip', ['netns', 'del', n]);
    }
  }
});
