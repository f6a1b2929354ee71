// Unit tests of the default guest's command protocol: encoding, and parsing the console in any chunking.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { CommandConsoleParser, encodeCommand, type ConsoleEvent } from '../../src/guest/command-protocol.js';

function collect(chunks: string[]): { boot: string; out: string; status: number | undefined } {
  const p = new CommandConsoleParser();
  const events: ConsoleEvent[] = chunks.flatMap((c) => p.push(c));
  return {
    boot: events.filter((e) => e.kind === 'boot-log').map((e) => (e as { text: string }).text).join(''),
    out: events.filter((e) => e.kind === 'output').map((e) => (e as { text: string }).text).join(''),
    status: events.find((e) => e.kind === 'exit')?.status,
  };
}

const CONSOLE = '[    0.1] Linux version 6.1\r\nRun /init\r\nTYPEVISOR-BEGIN\r\nLinux typevisor 6.1.192\r\nline two\r\nTYPEVISOR-EXIT 7\r\nreboot: Restarting system\r\n';

test('splits boot log, command output (CRLF → LF) and the exit status', () => {
  const r = collect([CONSOLE]);
  assert.equal(r.boot, '[    0.1] Linux version 6.1\nRun /init\n');
  assert.equal(r.out, 'Linux typevisor 6.1.192\nline two\n');
  assert.equal(r.status, 7);
});

test('output without a final newline still ends at the marker', () => {
  const r = collect(['TYPEVISOR-BEGIN\r\nno newline', 'TYPEVISOR-EXIT 0\r\n']);
  assert.equal(r.out, 'no newline');
  assert.equal(r.status, 0);
});

test('property: any chunking of the console gives the same result, whatever the status', () => {
  fc.assert(fc.property(fc.array(fc.nat(CONSOLE.length), { maxLength: 12 }), fc.integer({ min: 0, max: 255 }), (cuts, status) => {
    const console = CONSOLE.replace('TYPEVISOR-EXIT 7', `TYPEVISOR-EXIT ${status}`);
    const points = [...new Set(cuts)].sort((a, b) => a - b);
    const chunks: string[] = [];
    let last = 0;
    for (const p of points) { chunks.push(console.slice(last, p)); last = p; }
    chunks.push(console.slice(last));
    const whole = collect([console]);
    assert.equal(whole.status, status);
    assert.deepEqual(collect(chunks), whole);
    // Byte by byte, as the UART delivers it.
    assert.deepEqual(collect([...console]), whole);
  }));
});

test('argv survives spaces, quotes and newlines; overlong commands are refused', () => {
  const argv = ['sh', '-c', 'echo "a b"\n\'c\''];
  const enc = encodeCommand(argv);
  assert.match(enc, /^typevisor\.cmd=[A-Za-z0-9+/=]+$/);
  assert.deepEqual(Buffer.from(enc.slice(14), 'base64').toString().split('\0'), argv);
  assert.throws(() => encodeCommand(['x'.repeat(2000)]), /too long/);
});
