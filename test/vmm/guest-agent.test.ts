// The guest agent (guest/agent/typevisor-agent.c, built here with the host's gcc) and its host
// client (src/vmm/guest-agent.ts), end to end without a VM: the agent serves a Unix socket
// (--listen-unix) and a small stand-in for the VMM's hybrid vsock ("CONNECT 52\n" → "OK <port>\n")
// joins the two. Commands run on this host, as the agent's user.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync, statSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { GuestAgent } from '../../src/vmm/guest-agent.js';
import { encodeFrame } from '../../src/vmm/agent-protocol.js';
import { TypevisorError } from '../../src/base/errors.js';
import { tempDir } from '../helpers/native.js';

const SOURCE = fileURLToPath(new URL('../../../guest/agent/typevisor-agent.c', import.meta.url));
const dir = tempDir('typevisor-agent-');
const agentSock = join(dir, 'agent.sock');
const vsockSock = join(dir, 'vsock.sock');
let agentProcess: ChildProcess;
let shim: Server;
/** The shim's connections, ended when the tests are done. */
const open = new Set<Socket>();
const agent = new GuestAgent(vsockSock);

before(async () => {
  const exe = join(dir, 'typevisor-agent');
  execFileSync('gcc', ['-O2', '-Wall', '-Wextra', '-Werror', '-o', exe, SOURCE], { stdio: 'pipe' });
  agentProcess = spawn(exe, ['--listen-unix', agentSock], { stdio: 'inherit' });
  for (let i = 0; i < 100 && !existsSync(agentSock); i++) await new Promise((r) => setTimeout(r, 20));
  // The VMM's part: a CONNECT line for port 52 is answered with OK and joined to the agent; other ports are refused.
  shim = createServer((client) => {
    open.add(client);
    client.on('close', () => open.delete(client));
    let line = '';
    const onData = (d: Buffer): void => {
      line += d.toString('latin1');
      const nl = line.indexOf('\n');
      if (nl < 0) return;
      client.off('data', onData);
      if (line.slice(0, nl) !== 'CONNECT 52') { client.destroy(); return; }
      const upstream = connect(agentSock, () => {
        open.add(upstream);
        upstream.on('close', () => open.delete(upstream));
        client.write('OK 1073741824\n');
        const rest = Buffer.from(line.slice(nl + 1), 'latin1');
        if (rest.length > 0) upstream.write(rest);
        client.pipe(upstream);
        upstream.pipe(client);
      });
      // As the VMM does: a client that goes (even before the agent is reached) ends the guest side;
      // the guest side ending flushes what it sent, then ends the client.
      upstream.on('error', () => undefined);
      upstream.on('close', () => client.end());
      client.on('error', () => undefined);
      client.on('close', () => upstream.destroy());
    };
    client.on('data', onData);
  });
  await new Promise<void>((resolve) => shim.listen(vsockSock, resolve));
});

after(() => {
  for (const s of open) s.destroy();
  shim.close();
  agentProcess.kill();
});

test('exec: stdout, stderr, exit status, environment, working directory', async () => {
  const r = await agent.exec(['sh', '-c', 'echo "out $FOO"; echo err >&2; pwd; exit 7'], { env: { FOO: 'bar baz' }, cwd: '/tmp' });
  assert.deepEqual(r, { exitCode: 7, signal: 0, stdout: 'out bar baz\n/tmp\n', stderr: 'err\n' });
  const env = await agent.exec(['env']);
  assert.match(env.stdout, /^PATH=\/bin:\/sbin:\/usr\/bin:\/usr\/sbin$/m, 'the base environment');
  assert.equal((await agent.exec(['env'], { env: { PATH: '/usr/bin:/bin' } })).stdout.match(/^PATH=.*$/gm)?.join(), 'PATH=/usr/bin:/bin', 'overridden, not doubled');
  const args = ['a b', '', "it's", 'line\nbreak', 'ünïcødé'];
  assert.equal((await agent.exec(['printf', '[%s]', ...args])).stdout, args.map((a) => `[${a}]`).join(''), 'arguments arrive intact');
});

test('exec: a missing command is 127, a missing directory 126, a signal 128+N', async () => {
  const missing = await agent.exec(['/no/such/program']);
  assert.equal(missing.exitCode, 127);
  assert.match(missing.stderr, /cannot run \/no\/such\/program: No such file or directory/);
  const nodir = await agent.exec(['true'], { cwd: '/no/such/dir' });
  assert.equal(nodir.exitCode, 126);
  assert.match(nodir.stderr, /cannot enter \/no\/such\/dir/);
  const killed = await agent.exec(['sh', '-c', 'kill -9 $$']);
  assert.deepEqual([killed.exitCode, killed.signal], [137, 9]);
});

test('exec: stdin streams in, a long output streams out without loss', async () => {
  const input = Buffer.alloc(3 * 2 ** 20);
  for (let i = 0; i < input.length; i++) input[i] = (i * 7 + (i >> 11)) & 0xff;
  const md5 = createHash('md5').update(input).digest('hex');
  const r = await agent.exec(['md5sum'], { stdin: input });
  assert.equal(r.stdout.split(' ')[0], md5);
  // From a stream, in pieces.
  const piped = await agent.exec(['wc', '-c'], { stdin: Readable.from([Buffer.from('abc'), Buffer.from('defg')]) });
  assert.equal(piped.stdout.trim(), '7');
  // 40 MiB of output, counted and hashed as it streams.
  const proc = await agent.spawn(['sh', '-c', 'head -c 41943040 /dev/zero | tr "\\0" "x"; echo done >&2']);
  let bytes = 0;
  const hash = createHash('md5');
  proc.stdout.on('data', (c: Buffer) => { bytes += c.length; hash.update(c); });
  let err = '';
  proc.stderr.on('data', (c: Buffer) => { err += c.toString(); });
  const status = await proc.wait();
  assert.equal(status.exitCode, 0);
  assert.equal(bytes, 41943040);
  assert.equal(hash.digest('hex'), createHash('md5').update(Buffer.alloc(41943040, 'x')).digest('hex'));
  assert.equal(err, 'done\n');
});

test('exec: kill reaches the command group; a time-out kills and fails', async () => {
  const proc = await agent.spawn(['sh', '-c', 'sleep 30 & wait']);
  setTimeout(() => proc.kill('SIGTERM'), 200);
  const status = await proc.wait();
  assert.equal(status.signal, 15);
  const t0 = Date.now();
  await assert.rejects(agent.exec(['sleep', '30'], { timeoutMs: 300 }), (e: TypevisorError) => e.code === 'TIMEOUT' && /did not finish within 300 ms/.test(e.message));
  assert.ok(Date.now() - t0 < 5000);
});

test('files: 10 MiB written and read back byte-exact, modes kept, errors named', async () => {
  const data = new Uint8Array(10 * 2 ** 20);
  for (let i = 0; i < data.length; i++) data[i] = (i * 31 + (i >> 9)) & 0xff;
  const path = join(dir, 'upload.bin');
  await agent.writeFile(path, data, { mode: 0o600 });
  assert.ok(Buffer.from(readFileSync(path)).equals(Buffer.from(data)), 'what the agent wrote is what we sent');
  assert.equal(statSync(path).mode & 0o777, 0o600);
  const back = await agent.readFile(path);
  assert.ok(back.equals(Buffer.from(data)));
  await agent.writeFile(path, 'replaced');
  assert.equal(readFileSync(path, 'utf8'), 'replaced');
  assert.equal(await agent.readFile(join(dir, 'missing')).catch((e: TypevisorError) => e.code), 'NOT_FOUND');
  writeFileSync(join(dir, 'empty'), '');
  assert.equal((await agent.readFile(join(dir, 'empty'))).length, 0);
  await assert.rejects(agent.writeFile('/no/such/dir/f', 'x'), /write \/no\/such\/dir\/f: No such file or directory/);
  await assert.rejects(agent.readFile(dir), /Is a directory/);
  assert.ok(!existsSync('/no/such/dir'));
});

test('ping reports the agent version and guest health', async () => {
  const h = await agent.ping();
  assert.equal(h.version, 1);
  assert.ok(h.memTotalKib > 0 && h.memFreeKib > 0 && h.memFreeKib <= h.memTotalKib && h.procs > 0);
});

test('a refused port and a missing socket are AGENT_UNAVAILABLE', async () => {
  await assert.rejects(new GuestAgent(vsockSock, 53).ping(), (e: TypevisorError) => e.code === 'AGENT_UNAVAILABLE' && /refused/.test(e.message));
  await assert.rejects(new GuestAgent(join(dir, 'nothing.sock')).ping(), (e: TypevisorError) => e.code === 'AGENT_UNAVAILABLE' && /no such socket/.test(e.message));
});

test('the agent survives hostile requests: bad fields, an oversized frame, an unknown operation, a silent host', async () => {
  const raw = (bytes: Uint8Array): Promise<Buffer> => new Promise((resolve) => {
    const s = connect(agentSock, () => s.write(bytes));
    const parts: Buffer[] = [];
    s.on('data', (d: Buffer) => parts.push(d));
    s.on('close', () => resolve(Buffer.concat(parts)));
    setTimeout(() => s.destroy(), 2000);
  });
  const failure = (b: Buffer): string => (b[0] === 0x46 ? b.subarray(5).toString() : `frame ${b[0]}`);
  assert.equal(failure(await raw(encodeFrame('x', Buffer.from('zbogus\0')))), 'malformed request');
  assert.equal(failure(await raw(encodeFrame('x', Buffer.from('atrue')))), 'malformed request', 'a field without its NUL');
  assert.equal(failure(await raw(encodeFrame('q'))), 'unknown operation 0x71');
  assert.equal(failure(await raw(encodeFrame('x'))), 'exec: no command');
  const huge = new Uint8Array(5);
  huge[0] = 0x78;
  new DataView(huge.buffer).setUint32(1, 0xffffffff, true);
  assert.equal((await raw(huge)).length, 0, 'a 4 GiB frame is refused: the connection just closes');
  assert.equal((await raw(new Uint8Array([0x78, 1]))).length, 0, 'half a header, then nothing');
  // And it still serves.
  assert.equal((await agent.exec(['echo', 'still here'])).stdout, 'still here\n');
});

/** Processes on this host whose command line contains `marker`. */
function running(marker: string): number {
  return execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n').filter((l) => l.includes(marker) && !l.includes('ps -eo')).length;
}

test('a time-out kills the command even when the agent is not reading (stdin pending) or the command closed its output', async () => {
  const t0 = Date.now();
  await assert.rejects(agent.exec(['sleep', '31.7'], { stdin: Buffer.alloc(2 ** 20), timeoutMs: 300 }), /did not finish within 300 ms/);
  await assert.rejects(agent.exec(['sh', '-c', 'exec >/dev/null 2>&1; sleep 32.3'], { timeoutMs: 300 }), /did not finish within 300 ms/);
  for (let i = 0; i < 50 && running('sleep 31.7') + running('sleep 32.3') > 0; i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(running('sleep 31.7'), 0, 'the command with unread stdin is gone');
  assert.equal(running('sleep 32.3'), 0, 'the command that closed its output is gone');
  assert.ok(Date.now() - t0 < 8000);
  // A command that closed its output but goes on running is still waited for, and its status reported.
  assert.equal((await agent.exec(['sh', '-c', 'exec >/dev/null 2>&1; sleep 0.3; exit 4'])).exitCode, 4);
});

test('output the host does not read holds the command back; exec and readFile cap what they collect', async () => {
  const rss = (): number => process.memoryUsage().rss;
  const proc = await agent.spawn(['head', '-c', '300000000', '/dev/zero']);
  const before = rss();
  await new Promise((r) => setTimeout(r, 1500));
  const grown = rss() - before;
  assert.ok(grown < 64 * 2 ** 20, `unread output grew the host by ${(grown / 2 ** 20).toFixed(0)} MiB`);
  proc.abort();
  await assert.rejects(proc.wait(), /closed the connection/);
  await assert.rejects(agent.exec(['head', '-c', '5000000', '/dev/zero'], { maxBuffer: 1_000_000 }), /stdout exceeded 1000000 bytes \(maxBuffer\)/);
  await assert.rejects(agent.readFile('/dev/zero', { maxBytes: 3_000_000 }), /larger than 3000000 bytes \(maxBytes\)/);
  // An upload the agent refuses early still reports why.
  await assert.rejects(agent.writeFile('/no/such/dir/big', new Uint8Array(8 * 2 ** 20)), /No such file or directory/);
});

test('a spawned command whose connection dies does not crash a caller that never waits', async () => {
  const proc = await agent.spawn(['sleep', '30']);
  proc.abort();
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(true, 'no unhandled rejection ended the process');
});
