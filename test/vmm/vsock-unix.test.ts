// The vsock device's host side on real Unix sockets (src/vmm/vsock-unix.ts) with the I/O thread's
// event loop, in this thread: Firecracker's hybrid vsock handshake, data both ways, guest-initiated
// connections to PATH_PORT, a host client that goes away, malformed CONNECT lines.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, createServer, type Socket } from 'node:net';
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import { IoLoop } from '../../src/vmm/io-loop.js';
import { UnixVsockHost } from '../../src/vmm/vsock-unix.js';
import { listenUnix, closeSocket } from '../../src/sys/unix-socket.js';
import { SHUTDOWN_F, VSOCK_OP } from '../../src/devices/virtio/vsock/packet.js';
import { setupVsock } from '../helpers/vsock-driver.js';
import { tempDir } from '../helpers/native.js';
import { TypevisorError } from '../../src/base/errors.js';

function harness() {
  const path = join(tempDir('typevisor-vsock-'), 'v.sock');
  const loop = new IoLoop();
  const fd = listenUnix(path);
  const host = new UnixVsockHost(loop, fd, path);
  const t = setupVsock(host);
  host.attach(t.dev);
  t.giveRx(16);
  /** Lets Node's sockets and our event loop take turns until `until` holds. */
  const pump = async (until: () => boolean, what: string): Promise<void> => {
    for (let i = 0; i < 500; i++) {
      loop.runOnce(0);
      if (until()) return;
      await new Promise((r) => setTimeout(r, 2));
    }
    assert.fail(`timed out waiting for ${what}`);
  };
  const close = (): void => { loop.close(); closeSocket(fd); };
  return { ...t, path, loop, host, pump, close };
}

function collect(s: Socket): { text: () => string; ended: () => boolean } {
  let text = '';
  let ended = false;
  s.on('data', (d: Buffer) => { text += d.toString(); });
  s.on('end', () => { ended = true; });
  s.on('close', () => { ended = true; });
  s.on('error', () => { ended = true; });
  return { text: () => text, ended: () => ended };
}

test('host client: CONNECT 52 → REQUEST to the guest; RESPONSE → "OK <port>"; data both ways; host close → SHUTDOWN', async () => {
  const h = harness();
  const client = connect(h.path);
  const got = collect(client);
  client.write('CONNECT 52\nearly bytes');
  let packets: ReturnType<typeof h.received> = [];
  await h.pump(() => (packets = h.received()).length > 0, 'the REQUEST');
  assert.equal(packets[0]!.h.op, VSOCK_OP.REQUEST);
  assert.equal(packets[0]!.h.dstPort, 52);
  const local = packets[0]!.h.srcPort;
  h.send({ op: VSOCK_OP.RESPONSE, srcPort: 52, dstPort: local, bufAlloc: 65536 });
  await h.pump(() => got.text().startsWith(`OK ${local}\n`), 'OK');
  // Bytes the client sent after its CONNECT line were not eaten by the handshake.
  await h.pump(() => (packets = h.received()).length > 0, 'the early bytes');
  assert.equal(packets.map((p) => p.payload.toString()).join(''), 'early bytes');
  h.send({ op: VSOCK_OP.RW, srcPort: 52, dstPort: local }, Buffer.from('from the guest'));
  await h.pump(() => got.text() === `OK ${local}\nfrom the guest`, 'guest data at the client');
  client.end();
  await h.pump(() => (packets = h.received()).some((p) => p.h.op === VSOCK_OP.SHUTDOWN), 'SHUTDOWN');
  assert.equal(packets.find((p) => p.h.op === VSOCK_OP.SHUTDOWN)!.h.flags, SHUTDOWN_F.SEND);
  h.send({ op: VSOCK_OP.SHUTDOWN, srcPort: 52, dstPort: local, flags: SHUTDOWN_F.SEND | SHUTDOWN_F.RCV });
  await h.pump(() => got.ended() && h.dev.connectionCount === 0, 'the close');
  h.close();
});

test('guest connects to host port 6000: reaches PATH_6000; refused when nobody listens', async () => {
  const h = harness();
  const accepted: Socket[] = [];
  let serverGot = '';
  const server = createServer((s) => { accepted.push(s); s.on('data', (d: Buffer) => { serverGot += d.toString(); s.write(d.toString().toUpperCase()); }); });
  await new Promise<void>((r) => server.listen(`${h.path}_6000`, r));
  h.send({ op: VSOCK_OP.REQUEST, srcPort: 777, dstPort: 6000, bufAlloc: 65536 });
  let packets = h.received();
  assert.equal(packets[0]!.h.op, VSOCK_OP.RESPONSE);
  h.send({ op: VSOCK_OP.RW, srcPort: 777, dstPort: 6000 }, Buffer.from('echo me'));
  await h.pump(() => (packets = h.received()).length > 0, 'the echo');
  assert.equal(serverGot, 'echo me');
  assert.equal(packets.map((p) => p.payload.toString()).join(''), 'ECHO ME');
  h.send({ op: VSOCK_OP.REQUEST, srcPort: 778, dstPort: 6001 });
  assert.equal(h.received()[0]!.h.op, VSOCK_OP.RST, 'nobody at PATH_6001');
  // The host service hangs up: the guest hears SHUTDOWN.
  accepted[0]!.destroy();
  await h.pump(() => (packets = h.received()).some((p) => p.h.op === VSOCK_OP.SHUTDOWN), 'SHUTDOWN after the hang-up');
  server.close();
  h.close();
});

test('malformed or missing CONNECT lines are refused without reaching the guest', async () => {
  const h = harness();
  for (const line of ['HELLO\n', 'CONNECT -1\n', 'CONNECT 99999999999\n', `CONNECT ${'9'.repeat(40)}`]) {
    const c = connect(h.path);
    const got = collect(c);
    c.write(line);
    await h.pump(() => got.ended(), `refusal of ${JSON.stringify(line)}`);
    assert.equal(got.text(), '');
  }
  const silent = connect(h.path);
  const got = collect(silent);
  await h.pump(() => { h.host.tick(Date.now() + 10_000); return got.ended(); }, 'the handshake time-out');
  assert.equal(h.received().length, 0, 'the guest never heard of them');
  assert.equal(h.host.refusedHandshakes, 5);
  h.close();
});

test('more than 64 clients waiting in the handshake: the oldest are dropped; a host port whose PATH_PORT would be too long is refused', async () => {
  const h = harness();
  const clients = Array.from({ length: 70 }, () => connect(h.path));
  const ends = clients.map(collect);
  await h.pump(() => h.host.refusedHandshakes >= 6 && ends.filter((e) => e.ended()).length >= 6, 'the oldest handshakes dropped');
  assert.ok(ends.slice(0, 6).every((e) => e.ended()), 'the first six went');
  for (const c of clients) c.destroy();
  h.close();
  // A socket path so long that PATH_PORT cannot be a socket address: the guest's connection is refused, nothing throws.
  const longDir = join(tempDir('typevisor-vsock-'), 'x'.repeat(60));
  mkdirSync(longDir);
  const path = join(longDir, 'v.sock');
  const loop = new IoLoop();
  const fd = listenUnix(path);
  const host = new UnixVsockHost(loop, fd, path);
  assert.equal(host.connect(4294967295), undefined);
  loop.close();
  closeSocket(fd);
});

test('a socket path that is too long or in use is a clear error', () => {
  assert.throws(() => listenUnix(`/tmp/${'x'.repeat(120)}`), (e: TypevisorError) => e.code === 'INVALID_ARGUMENT' && /1–107/.test(e.message));
  const path = join(tempDir('typevisor-vsock-'), 'busy.sock');
  const fd = listenUnix(path);
  assert.throws(() => listenUnix(path), /in use/);
  closeSocket(fd);
});
