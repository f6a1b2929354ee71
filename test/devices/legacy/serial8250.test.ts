// Unit tests of the 16550A UART: registers as Linux's 8250 driver drives them, shared state across threads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { Serial8250 } from '../../../src/devices/legacy/serial8250.js';

function uart(): { u: Serial8250; out: number[]; irq: boolean[]; state: SharedArrayBuffer } {
  const state = Serial8250.createState();
  const out: number[] = [];
  const irq: boolean[] = [];
  const u = new Serial8250(state, { onOutput: (b) => out.push(b), irq: { set: (l) => irq.push(l) } });
  return { u, out, irq, state };
}
const rd = (u: Serial8250, off: number): number => { const d = new Uint8Array(1); u.read(off, d); return d[0]!; };
const wr = (u: Serial8250, off: number, v: number): void => u.write(off, Uint8Array.of(v));

test('transmits bytes written to THR; LSR always reports an empty transmitter', () => {
  const { u, out } = uart();
  for (const c of 'ok') wr(u, 0, c.charCodeAt(0));
  assert.deepEqual(out, [0x6f, 0x6b]);
  assert.equal(rd(u, 5) & 0x60, 0x60);
});

test('divisor latch: DLAB redirects offsets 0 and 1', () => {
  const { u, out } = uart();
  wr(u, 3, 0x83);
  wr(u, 0, 0x01);
  wr(u, 1, 0x00);
  assert.equal(rd(u, 0), 0x01);
  assert.equal(rd(u, 1), 0x00);
  assert.deepEqual(out, []);
  wr(u, 3, 0x03);
  wr(u, 1, 0x05);
  assert.equal(rd(u, 1), 0x05);
});

test('receive: input sets DR, raises the RX interrupt through OUT2, and reads drain it in order', () => {
  const { u, irq } = uart();
  wr(u, 4, 0x08); // OUT2
  wr(u, 1, 0x01); // RX interrupts
  assert.equal(u.enqueueInput(Uint8Array.of(0x41, 0x42)), 2);
  assert.equal(irq.at(-1), true);
  assert.equal(rd(u, 2) & 0x0f, 0x04);
  assert.equal(rd(u, 5) & 1, 1);
  assert.equal(rd(u, 0), 0x41);
  assert.equal(rd(u, 0), 0x42);
  assert.equal(rd(u, 5) & 1, 0);
  assert.equal(irq.at(-1), false);
  assert.equal(rd(u, 2) & 0x0f, 0x01);
});

test('THRE interrupt: raised when enabled, acknowledged by reading IIR, raised again by a write', () => {
  const { u, irq } = uart();
  wr(u, 4, 0x08);
  wr(u, 1, 0x02);
  assert.equal(irq.at(-1), true);
  assert.equal(rd(u, 2) & 0x0f, 0x02);
  assert.equal(irq.at(-1), false);
  assert.equal(rd(u, 2) & 0x0f, 0x01);
  wr(u, 0, 0x20);
  assert.equal(irq.at(-1), true);
});

test('no IRQ without OUT2 (PC wiring); FIFO enable shows in IIR', () => {
  const { u, irq } = uart();
  wr(u, 1, 0x03);
  u.enqueueInput(Uint8Array.of(1));
  assert.deepEqual(irq, []);
  wr(u, 2, 0x01);
  assert.equal(rd(u, 2) & 0xc0, 0xc0);
});

test('loopback and scratch: what Linux probes at boot', () => {
  const { u, out } = uart();
  wr(u, 7, 0xa5);
  assert.equal(rd(u, 7), 0xa5);
  wr(u, 4, 0x10 | 0x0a); // loop, RTS, OUT2
  assert.equal(rd(u, 6) & 0xf0, 0x90); // CTS and DCD
  wr(u, 0, 0x55);
  assert.deepEqual(out, []);
  assert.equal(rd(u, 0), 0x55);
});

test('input is bounded; a full buffer accepts nothing more', () => {
  const { u } = uart();
  const big = new Uint8Array(70_000);
  assert.equal(u.enqueueInput(big), 64 * 1024);
  assert.equal(u.enqueueInput(Uint8Array.of(1)), 0);
});

test('input from one thread is read through another object over the same shared state, without loss', async () => {
  const { u, state } = uart();
  const modUrl = new URL('../../../src/devices/legacy/serial8250.js', import.meta.url).href;
  const worker = new Worker(`
    import('${modUrl}').then(({ Serial8250 }) => {
      const { workerData, parentPort } = require('node:worker_threads');
      const u = new Serial8250(workerData, { onOutput() {}, irq: { set() {} } });
      let sent = 0;
      while (sent < 20000) sent += u.enqueueInput(Uint8Array.of(sent & 0xff));
      parentPort.postMessage('done');
    });`, { eval: true, workerData: state });
  const got: number[] = [];
  let done = false;
  worker.on('message', () => { done = true; });
  while (got.length < 20000) {
    if (rd(u, 5) & 1) got.push(rd(u, 0));
    else if (done && u.pendingInput === 0) break;
    else await new Promise((r) => setImmediate(r));
  }
  await worker.terminate();
  assert.equal(got.length, 20000);
  assert.ok(got.every((b, i) => b === (i & 0xff)));
});

test('property: random register traffic never throws and the IRQ line matches IIR', () => {
  fc.assert(fc.property(fc.array(fc.tuple(fc.boolean(), fc.integer({ min: 0, max: 9 }), fc.integer({ min: 0, max: 255 })), { maxLength: 200 }),
    (ops) => {
      let level = false;
      const state = Serial8250.createState();
      const u = new Serial8250(state, { onOutput: () => undefined, irq: { set: (l) => { level = l; } } });
      for (const [isWrite, off, v] of ops) {
        if (off === 8) u.enqueueInput(Uint8Array.of(v));
        else if (isWrite) wr(u, off, v);
        else rd(u, off);
      }
      const mcr = rd(u, 4);
      // Peek IIR without acknowledging THRE: only check when no THRE could be consumed.
      const lsr = rd(u, 5);
      const ier = (wr(u, 3, rd(u, 3) & 0x7f), rd(u, 1));
      const rxPending = (ier & 1) !== 0 && (lsr & 1) !== 0;
      if (rxPending && mcr & 0x08) assert.equal(level, true);
      if (!(mcr & 0x08)) assert.equal(level, false);
    }));
});
