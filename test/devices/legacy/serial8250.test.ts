// Unit tests of the 16550A UART: registers as Linux's 8250 driver probes and drives them, shared state across threads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import fc from 'fast-check';
import { Serial8250, SERIAL_INPUT_CAPACITY } from '../../../src/devices/legacy/serial8250.js';

const RBR = 0, IER = 1, IIR = 2, FCR = 2, LCR = 3, MCR = 4, LSR = 5, MSR = 6, SCR = 7;

interface Rig { u: Serial8250; out: number[]; irq: boolean[]; state: SharedArrayBuffer }
function uart(state = Serial8250.createState()): Rig {
  const out: number[] = [];
  const irq: boolean[] = [];
  const u = new Serial8250(state, { onOutput: (b) => out.push(b), irq: { set: (l) => irq.push(l) } });
  return { u, out, irq, state };
}
const rd = (u: Serial8250, off: number): number => { const d = new Uint8Array(1); u.read(off, d); return d[0]!; };
const wr = (u: Serial8250, off: number, v: number): void => u.write(off, Uint8Array.of(v));

test('reset state: 8N1, no interrupt, empty transmitter, modem lines up; reserved bits do not stick', () => {
  const { u } = uart();
  assert.equal(rd(u, LCR), 0x03);
  assert.equal(rd(u, IIR), 0x01);
  assert.equal(rd(u, LSR), 0x60);
  assert.equal(rd(u, MSR), 0xb0);
  wr(u, IER, 0xff);
  assert.equal(rd(u, IER), 0x0f);
  wr(u, MCR, 0xff);
  assert.equal(rd(u, MCR), 0x1f);
  assert.equal(rd(u, 8), 0xff); // beyond the 8 registers: open bus
  const wide = new Uint8Array(4).fill(0xaa);
  u.read(LCR, wide);
  assert.deepEqual([...wide], [0x03, 0, 0, 0]);
});

test('transmits bytes written to THR; LSR always reports an empty transmitter', () => {
  const { u, out } = uart();
  for (const c of 'ok') wr(u, 0, c.charCodeAt(0));
  assert.deepEqual(out, [0x6f, 0x6b]);
  assert.equal(rd(u, LSR) & 0x60, 0x60);
});

test('divisor latch: DLAB redirects offsets 0 and 1 without touching THR/IER', () => {
  const { u, out } = uart();
  wr(u, IER, 0x05);
  wr(u, LCR, 0x83);
  wr(u, 0, 0x01);
  wr(u, 1, 0x02);
  assert.equal(rd(u, 0), 0x01);
  assert.equal(rd(u, 1), 0x02);
  assert.deepEqual(out, []);
  wr(u, LCR, 0x03);
  assert.equal(rd(u, IER), 0x05);
  wr(u, LCR, 0x83);
  assert.equal(rd(u, 1), 0x02);
});

test("Linux's autoconfig passes: IER probe, loopback MSR, FIFO detection as 16550A, scratch", () => {
  const { u, out } = uart();
  // IER: 0 reads 0, 0x0F reads 0x0F.
  const saved = rd(u, IER);
  wr(u, IER, 0);
  assert.equal(rd(u, IER) & 0x0f, 0);
  wr(u, IER, 0x0f);
  assert.equal(rd(u, IER) & 0x0f, 0x0f);
  wr(u, IER, saved);
  // Loopback with RTS|OUT2 must show CTS|DCD only.
  const mcr = rd(u, MCR);
  wr(u, MCR, 0x10 | 0x0a);
  assert.equal(rd(u, MSR) & 0xf0, 0x90);
  wr(u, MCR, 0x10 | 0x05); // DTR|OUT1 -> DSR|RI
  assert.equal(rd(u, MSR) & 0xf0, 0x60);
  wr(u, MCR, mcr);
  // FIFO: enabled shows 0xC0 in IIR (16550A), disabled shows 0.
  wr(u, FCR, 0x01);
  assert.equal(rd(u, IIR) & 0xc0, 0xc0);
  wr(u, FCR, 0x07); // enable + clear both FIFOs, as serial8250_clear_fifos does
  wr(u, FCR, 0x00);
  assert.equal(rd(u, IIR) & 0xc0, 0);
  wr(u, SCR, 0xa5);
  assert.equal(rd(u, SCR), 0xa5);
  wr(u, SCR, 0x5a);
  assert.equal(rd(u, SCR), 0x5a);
  // Loopback data comes back to RBR instead of going out.
  wr(u, MCR, 0x10);
  wr(u, 0, 0x55);
  assert.deepEqual(out, []);
  assert.equal(rd(u, LSR) & 1, 1);
  assert.equal(rd(u, RBR), 0x55);
  assert.equal(rd(u, LSR) & 1, 0);
});

test("Linux's startup THRE test: THRE is re-asserted when ETBEI is set again after IIR acknowledged it", () => {
  const { u } = uart();
  wr(u, LCR, 0x03);
  wr(u, MCR, 0x0b); // DTR|RTS|OUT2
  wr(u, IER, 0x02);
  const iir1 = rd(u, IIR);
  wr(u, IER, 0);
  wr(u, IER, 0x02);
  const iir = rd(u, IIR);
  wr(u, IER, 0);
  assert.equal(iir1 & 0x0f, 0x02);
  assert.equal(iir & 0x01, 0, 'UART_BUG_THRE would be flagged');
  // Re-writing IER with ETBEI already set is not an edge.
  wr(u, IER, 0x02);
  assert.equal(rd(u, IIR) & 0x0f, 0x02);
  wr(u, IER, 0x03);
  assert.equal(rd(u, IIR) & 0x0f, 0x01);
});

test('transmit driven by interrupts as serial8250 does it: the line pulses once per FIFO refill', () => {
  const { u, out, irq } = uart();
  wr(u, MCR, 0x0b);
  wr(u, FCR, 0x01);
  const text = [...'hello, world: more than sixteen bytes'].map((c) => c.charCodeAt(0));
  let sent = 0;
  wr(u, IER, 0x02); // start_tx
  assert.deepEqual(irq, [true]);
  // The interrupt handler: loop while IIR reports something.
  for (let guard = 0; guard < 10; guard++) {
    const iir = rd(u, IIR);
    if (iir & 0x01) break;
    assert.equal(iir, 0xc2);
    assert.equal(irq.at(-1), false, 'reading IIR acknowledged THRE');
    if (rd(u, LSR) & 0x20) {
      for (let i = 0; i < 16 && sent < text.length; i++) wr(u, 0, text[sent++]!);
      if (sent === text.length) wr(u, IER, 0); // stop_tx
    }
  }
  assert.deepEqual(out, text);
  assert.equal(irq.at(-1), false);
  assert.deepEqual(irq, [true, false, true, false, true, false, true, false]);
});

test('receive: input sets DR, raises the RX interrupt through OUT2, and reads drain it in order', () => {
  const { u, irq } = uart();
  wr(u, MCR, 0x08);
  wr(u, IER, 0x01);
  assert.equal(u.enqueueInput(Uint8Array.of(0x41, 0x42)), 2);
  assert.deepEqual(irq, [true]);
  assert.equal(u.pendingInput, 2);
  assert.equal(rd(u, IIR) & 0x0f, 0x04);
  assert.equal(rd(u, IIR) & 0x0f, 0x04, 'reading IIR does not acknowledge RX data');
  assert.equal(rd(u, LSR) & 1, 1);
  assert.equal(rd(u, RBR), 0x41);
  assert.equal(irq.at(-1), true);
  assert.equal(rd(u, RBR), 0x42);
  assert.equal(rd(u, LSR) & 1, 0);
  assert.deepEqual(irq, [true, false]);
  assert.equal(rd(u, IIR) & 0x0f, 0x01);
  assert.equal(rd(u, RBR), 0, 'an empty RBR reads 0 and changes nothing');
});

test('IIR priority: line status over RX data over THRE, then none', () => {
  const { u, irq } = uart();
  wr(u, MCR, 0x08);
  wr(u, IER, 0x07);
  assert.equal(u.enqueueInput(new Uint8Array(SERIAL_INPUT_CAPACITY)), SERIAL_INPUT_CAPACITY);
  wr(u, MCR, 0x18);
  wr(u, 0, 0x99); // loopback into a full buffer: overrun; THRE pending too
  wr(u, MCR, 0x08);
  assert.equal(rd(u, IIR) & 0x0f, 0x06);
  assert.equal(rd(u, LSR), 0x63, 'DR|OE|THRE|TEMT');
  assert.equal(rd(u, LSR), 0x61, 'reading LSR cleared OE');
  assert.equal(rd(u, IIR) & 0x0f, 0x04);
  while (rd(u, LSR) & 1) rd(u, RBR);
  assert.equal(irq.at(-1), true);
  assert.equal(rd(u, IIR) & 0x0f, 0x02);
  assert.equal(irq.at(-1), false);
  assert.equal(rd(u, IIR) & 0x0f, 0x01);
});

test('OUT2 gates the IRQ line (PC wiring); the line follows it while an interrupt is pending', () => {
  const { u, irq } = uart();
  wr(u, IER, 0x03);
  u.enqueueInput(Uint8Array.of(1));
  assert.deepEqual(irq, []);
  wr(u, MCR, 0x08);
  assert.deepEqual(irq, [true]);
  wr(u, MCR, 0x00);
  assert.deepEqual(irq, [true, false]);
});

test('input is bounded; a full buffer accepts nothing more until the guest reads', () => {
  const { u } = uart();
  assert.equal(u.enqueueInput(new Uint8Array(70_000).fill(7)), SERIAL_INPUT_CAPACITY);
  assert.equal(u.enqueueInput(Uint8Array.of(1)), 0);
  assert.equal(rd(u, RBR), 7);
  assert.equal(u.enqueueInput(Uint8Array.of(1, 2)), 1);
  assert.equal(rd(u, LSR) & 0x02, 0, 'host input never overruns');
});

test('the ring wraps: bytes stay in order across the end of the buffer', () => {
  const { u } = uart();
  const chunk = new Uint8Array(40_000).map((_, i) => i & 0xff);
  for (let round = 0; round < 3; round++) {
    assert.equal(u.enqueueInput(chunk), chunk.length);
    for (let i = 0; i < chunk.length; i++) assert.equal(rd(u, RBR), i & 0xff);
  }
});

test('two objects over one shared state see the same UART; each keeps its own output callback', () => {
  const a = uart();
  const b = uart(a.state);
  wr(a.u, MCR, 0x08);
  wr(a.u, IER, 0x01);
  b.u.enqueueInput(Uint8Array.of(0x61));
  assert.deepEqual(b.irq, [true], 'the thread that changed the level drives the line');
  assert.equal(rd(a.u, RBR), 0x61);
  assert.deepEqual(a.irq, [false]);
  wr(b.u, 0, 0x62);
  assert.deepEqual([a.out, b.out], [[], [0x62]]);
  wr(a.u, SCR, 0x33);
  assert.equal(rd(b.u, SCR), 0x33);
});

test('input from a worker thread is read through another object over the same shared state, without loss or duplication', async () => {
  const { u, state } = uart();
  const total = 200_000;
  const modUrl = new URL('../../../src/devices/legacy/serial8250.js', import.meta.url).href;
  const worker = new Worker(`
    const { workerData, parentPort } = require('node:worker_threads');
    import(${JSON.stringify(modUrl)}).then(({ Serial8250 }) => {
      const u = new Serial8250(workerData.state, { onOutput() {}, irq: { set() {} } });
      let sent = 0;
      while (sent < workerData.total) {
        const n = Math.min(1 + (sent % 97), workerData.total - sent);
        const chunk = new Uint8Array(n).map((_, i) => (sent + i) & 0xff);
        sent += u.enqueueInput(chunk);
      }
      parentPort.postMessage('done');
    });`, { eval: true, workerData: { state, total } });
  const failed = new Promise<never>((_, reject) => worker.once('error', reject));
  const got = new Uint8Array(total);
  let n = 0;
  let spins = 0;
  while (n < total) {
    if (rd(u, LSR) & 1) got[n++] = rd(u, RBR);
    else if (++spins % 1000 === 0) await Promise.race([new Promise((r) => setImmediate(r)), failed]);
    if (spins > 50_000_000) break;
  }
  await worker.terminate();
  assert.equal(n, total);
  assert.equal(u.pendingInput, 0);
  for (let i = 0; i < total; i++) if (got[i] !== (i & 0xff)) assert.fail(`byte ${i} is ${got[i]}`);
});

test('a thread that finds the lock held sleeps and is woken by the holder, without losing its access', async () => {
  const { u, state } = uart();
  const lockWord = new Int32Array(state, 0, 1); // slot 0 is the lock (0 free, 1 held, 2 held with sleepers)
  Atomics.store(lockWord, 0, 1); // as if another thread were inside a register access
  const modUrl = new URL('../../../src/devices/legacy/serial8250.js', import.meta.url).href;
  const worker = new Worker(`
    const { workerData, parentPort } = require('node:worker_threads');
    import(${JSON.stringify(modUrl)}).then(({ Serial8250 }) => {
      const u = new Serial8250(workerData, { onOutput() {}, irq: { set() {} } });
      u.write(7, Uint8Array.of(0x42));
      parentPort.postMessage('done');
    });`, { eval: true, workerData: state });
  const done = new Promise((resolve, reject) => { worker.once('message', resolve); worker.once('error', reject); });
  for (let i = 0; i < 200 && Atomics.load(lockWord, 0) !== 2; i++) await new Promise((r) => setTimeout(r, 5));
  assert.equal(Atomics.load(lockWord, 0), 2, 'the worker announced itself as a sleeper');
  // Release the way the holder would: a sleeper is present, so store 0 and wake it.
  assert.notEqual(Atomics.sub(lockWord, 0, 1), 1);
  Atomics.store(lockWord, 0, 0);
  Atomics.notify(lockWord, 0, 1);
  await done;
  await worker.terminate();
  assert.equal(rd(u, SCR), 0x42);
  assert.equal(Atomics.load(lockWord, 0), 0);
});

test('property: random register traffic never throws; IRQ level, IIR and LSR stay consistent', () => {
  const op = fc.oneof(
    fc.record({ kind: fc.constant('w' as const), off: fc.integer({ min: -2, max: 10 }), v: fc.integer({ min: 0, max: 255 }), width: fc.constantFrom(1, 2, 4) }),
    fc.record({ kind: fc.constant('r' as const), off: fc.integer({ min: -2, max: 10 }), width: fc.constantFrom(0, 1, 2, 4, 8) }),
    fc.record({ kind: fc.constant('in' as const), bytes: fc.uint8Array({ maxLength: 20 }) }),
  );
  fc.assert(fc.property(fc.array(fc.tuple(op, fc.boolean()), { maxLength: 150 }), (ops) => {
    const levels: boolean[] = [];
    let level: boolean = false;
    const u = new Serial8250(Serial8250.createState(), { onOutput: () => undefined, irq: { set: (l) => { levels.push(l); level = l; } } });
    for (const [o, check] of ops) {
      if (o.kind === 'w') { const d = new Uint8Array(o.width); d[0] = o.v; u.write(o.off, d); }
      else if (o.kind === 'r') u.read(o.off, new Uint8Array(o.width));
      else u.enqueueInput(o.bytes);
      if (!check) continue;
      // Observing IIR may acknowledge THRE, which is fine: it is just one more guest access.
      const mcr = rd(u, MCR);
      const before: boolean = level;
      const iir = rd(u, IIR);
      assert.ok([0x01, 0x02, 0x04, 0x06].includes(iir & 0x0f), `IIR ${iir}`);
      assert.ok((iir & 0xc0) === 0 || (iir & 0xc0) === 0xc0);
      assert.equal(iir & 0x30, 0);
      assert.equal(before, (iir & 0x01) === 0 && (mcr & 0x08) !== 0, `IRQ level vs IIR ${iir} MCR ${mcr}`);
      const lsr = rd(u, LSR);
      assert.equal(lsr & 0x60, 0x60);
      assert.equal((lsr & 0x01) !== 0, u.pendingInput > 0);
      assert.equal(level, (rd(u, IIR) & 0x01) === 0 && (mcr & 0x08) !== 0);
    }
    // The line is only told about changes, so successive levels alternate.
    levels.forEach((l, i) => assert.equal(l, i % 2 === 0));
  }), { numRuns: 300 });
});
