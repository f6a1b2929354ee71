// A 16550A UART (8250 family; National Semiconductor PC16550D datasheet), as Linux's 8250 driver drives it.
import type { BusDevice, IrqLine } from '../bus-device.js';

// Register offsets.
const RBR_THR_DLL = 0;
const IER_DLM = 1;
const IIR_FCR = 2;
const LCR = 3;
const MCR = 4;
const LSR = 5;
const MSR = 6;
const SCR = 7;

const IER_RDI = 0x01; // received data available
const IER_THRI = 0x02; // transmitter holding register empty
const IER_RLSI = 0x04; // receiver line status
const IER_MASK = 0x0f; // bits 4-7 are reserved on a 16550A: Linux's probe checks they do not stick
const IIR_NONE = 0x01;
const IIR_THRI = 0x02;
const IIR_RDI = 0x04;
const IIR_RLSI = 0x06;
const IIR_FIFO_BITS = 0xc0;
const FCR_ENABLE = 0x01;
const LCR_DLAB = 0x80;
const MCR_DTR = 0x01;
const MCR_RTS = 0x02;
const MCR_OUT1 = 0x04;
const MCR_OUT2 = 0x08;
const MCR_LOOP = 0x10;
const MCR_MASK = 0x1f;
const LSR_DR = 0x01;
const LSR_OE = 0x02;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;
const MSR_CTS = 0x10;
const MSR_DSR = 0x20;
const MSR_RI = 0x40;
const MSR_DCD = 0x80;

/** Int32 slots of the shared state. */
const LOCK = 0; // 0 free, 1 held, 2 held with sleepers (Drepper's futex mutex)
const IER = 1;
const LCR_REG = 2;
const MCR_REG = 3;
const SCR_REG = 4;
const DLL = 5;
const DLM = 6;
const FCR = 7;
const THRE_PENDING = 8; // the THRE interrupt is pending (cleared by reading IIR, as on a real 16550A)
const LSR_ERRORS = 9; // sticky LSR error bits (overrun), cleared by reading LSR
const RX_HEAD = 10;
const RX_COUNT = 11;
const IRQ_LEVEL = 12; // last level driven onto the IRQ line, shared so threads do not re-send it
const WORDS = 16;

/** Spins before sleeping on a held lock: critical sections are a few dozen instructions plus maybe one ioctl. */
const SPINS = 200;

/** Bytes of input buffered for the guest: the 16-byte receive FIFO plus a host-side backlog behind it. */
export const SERIAL_INPUT_CAPACITY = 64 * 1024;

export interface Serial8250Options {
  /** A byte the guest transmitted. Called on the thread that made the access, with the UART lock held. */
  onOutput: (byte: number) => void;
  /** The UART's interrupt line (COM1: ISA IRQ 4). Called with the lock held so levels reach it in order. */
  irq: IrqLine;
}

/**
 * The UART is touched by vCPU threads (register accesses) and the main thread (console input),
 * so all its state lives in one SharedArrayBuffer and each thread builds its own Serial8250 over it.
 * Every operation holds a lock for a few instructions.
 *
 * The receive side is one ring: its first 16 bytes play the FIFO, the rest is the host backlog
 * that refills it instantly. From the guest's view that is a line delivering bytes as fast as it
 * reads them, so trigger levels and character timeouts (IIR 0x0C) are not modelled: RX data
 * interrupts as soon as a byte is there, which Linux handles identically. Clearing the RX FIFO
 * through FCR therefore drops nothing; the bytes behind it would have arrived right after.
 */
export class Serial8250 implements BusDevice {
  private readonly s: Int32Array;
  private readonly rx: Uint8Array;

  /** Fresh UART state, as a BIOS leaves it (8N1 at 9600 baud); share it with every thread's Serial8250. */
  static createState(): SharedArrayBuffer {
    const sab = new SharedArrayBuffer(WORDS * 4 + SERIAL_INPUT_CAPACITY);
    const s = new Int32Array(sab, 0, WORDS);
    s[LCR_REG] = 0x03;
    s[DLL] = 0x0c;
    return sab;
  }

  constructor(state: SharedArrayBuffer, private readonly opts: Serial8250Options) {
    this.s = new Int32Array(state, 0, WORDS);
    this.rx = new Uint8Array(state, WORDS * 4, SERIAL_INPUT_CAPACITY);
  }

  read(offset: number, data: Uint8Array): void {
    this.lock();
    let value: number;
    try {
      value = this.readRegister(offset);
    } finally {
      this.unlock();
    }
    // Wider accesses see the register in the low byte, zeros above.
    data.fill(0);
    data[0] = value;
  }

  write(offset: number, data: Uint8Array): void {
    const value = data[0] ?? 0;
    this.lock();
    try {
      this.writeRegister(offset, value);
    } finally {
      this.unlock();
    }
  }

  /** Adds console input; returns how many bytes fit (the caller retries the rest later). */
  enqueueInput(bytes: Uint8Array): number {
    this.lock();
    try {
      const n = Math.min(bytes.length, SERIAL_INPUT_CAPACITY - this.s[RX_COUNT]!);
      for (let i = 0; i < n; i++) this.pushRx(bytes[i]!);
      this.updateIrq();
      return n;
    } finally {
      this.unlock();
    }
  }

  /** Bytes of input the guest has not read yet. */
  get pendingInput(): number {
    return Atomics.load(this.s, RX_COUNT);
  }

  private lock(): void {
    const s = this.s;
    let c = Atomics.compareExchange(s, LOCK, 0, 1);
    for (let i = 0; c !== 0 && i < SPINS; i++) c = Atomics.compareExchange(s, LOCK, 0, 1);
    if (c === 0) return;
    // Still held (its owner was probably descheduled): announce a sleeper and wait to be woken.
    if (c !== 2) c = Atomics.exchange(s, LOCK, 2);
    while (c !== 0) {
      Atomics.wait(s, LOCK, 2);
      c = Atomics.exchange(s, LOCK, 2);
    }
  }

  private unlock(): void {
    if (Atomics.sub(this.s, LOCK, 1) !== 1) {
      Atomics.store(this.s, LOCK, 0);
      Atomics.notify(this.s, LOCK, 1);
    }
  }

  /** Appends a received byte; a full buffer overruns (loopback only: host input is bounded by the caller). */
  private pushRx(byte: number): void {
    const s = this.s;
    const count = s[RX_COUNT]!;
    if (count >= SERIAL_INPUT_CAPACITY) {
      s[LSR_ERRORS] = s[LSR_ERRORS]! | LSR_OE;
      return;
    }
    this.rx[(s[RX_HEAD]! + count) % SERIAL_INPUT_CAPACITY] = byte;
    s[RX_COUNT] = count + 1;
  }

  private popRx(): number {
    const s = this.s;
    if (s[RX_COUNT] === 0) return 0;
    const head = s[RX_HEAD]!;
    s[RX_HEAD] = (head + 1) % SERIAL_INPUT_CAPACITY;
    s[RX_COUNT] = s[RX_COUNT]! - 1;
    return this.rx[head]!;
  }

  /** The highest-priority pending interrupt's IIR code (line status > RX data > THRE), or IIR_NONE. */
  private pendingIir(): number {
    const s = this.s;
    const ier = s[IER]!;
    if (ier & IER_RLSI && s[LSR_ERRORS] !== 0) return IIR_RLSI;
    if (ier & IER_RDI && s[RX_COUNT]! > 0) return IIR_RDI;
    if (ier & IER_THRI && s[THRE_PENDING] !== 0) return IIR_THRI;
    return IIR_NONE;
  }

  /** Drives the IRQ line: an interrupt is pending and OUT2 gates it through (as a PC wires it). */
  private updateIrq(): void {
    const s = this.s;
    const level = this.pendingIir() !== IIR_NONE && (s[MCR_REG]! & MCR_OUT2) !== 0 ? 1 : 0;
    if (level !== s[IRQ_LEVEL]) {
      s[IRQ_LEVEL] = level;
      this.opts.irq.set(level === 1);
    }
  }

  private readRegister(offset: number): number {
    const s = this.s;
    const dlab = (s[LCR_REG]! & LCR_DLAB) !== 0;
    switch (offset) {
      case RBR_THR_DLL: {
        if (dlab) return s[DLL]!;
        const b = this.popRx();
        this.updateIrq();
        return b;
      }
      case IER_DLM:
        return dlab ? s[DLM]! : s[IER]!;
      case IIR_FCR: {
        const iir = this.pendingIir();
        // Reading IIR while it reports THRE acknowledges that interrupt; Linux's THRE test relies on it.
        if (iir === IIR_THRI) {
          s[THRE_PENDING] = 0;
          this.updateIrq();
        }
        return iir | (s[FCR]! & FCR_ENABLE ? IIR_FIFO_BITS : 0);
      }
      case LCR:
        return s[LCR_REG]!;
      case MCR:
        return s[MCR_REG]!;
      case LSR: {
        // We transmit instantly, so the holding and shift registers are always empty.
        const lsr = (s[RX_COUNT]! > 0 ? LSR_DR : 0) | s[LSR_ERRORS]! | LSR_THRE | LSR_TEMT;
        if (s[LSR_ERRORS] !== 0) {
          s[LSR_ERRORS] = 0;
          this.updateIrq();
        }
        return lsr;
      }
      case MSR: {
        const mcr = s[MCR_REG]!;
        // Loopback wires the modem outputs to the inputs; Linux's probe checks exactly this mapping.
        if (mcr & MCR_LOOP) {
          return (mcr & MCR_DTR ? MSR_DSR : 0) | (mcr & MCR_RTS ? MSR_CTS : 0) |
            (mcr & MCR_OUT1 ? MSR_RI : 0) | (mcr & MCR_OUT2 ? MSR_DCD : 0);
        }
        // A peer that is always there and ready (no delta bits: the lines never change).
        return MSR_DCD | MSR_DSR | MSR_CTS;
      }
      case SCR:
        return s[SCR_REG]!;
      default:
        return 0xff;
    }
  }

  private writeRegister(offset: number, value: number): void {
    const s = this.s;
    const dlab = (s[LCR_REG]! & LCR_DLAB) !== 0;
    switch (offset) {
      case RBR_THR_DLL:
        if (dlab) {
          s[DLL] = value;
          return;
        }
        if (s[MCR_REG]! & MCR_LOOP) this.pushRx(value);
        else this.opts.onOutput(value);
        // Transmitted at once: the holding register is empty again, which raises THRE anew.
        s[THRE_PENDING] = 1;
        this.updateIrq();
        return;
      case IER_DLM: {
        if (dlab) {
          s[DLM] = value;
          return;
        }
        // Setting ETBEI while the holding register is empty (always, here) raises THRE again, even
        // after IIR acknowledged it: Linux's startup test and its start_tx both rely on this edge.
        const rising = value & IER_THRI & ~s[IER]!;
        if (rising) s[THRE_PENDING] = 1;
        s[IER] = value & IER_MASK;
        this.updateIrq();
        return;
      }
      case IIR_FCR:
        // Only FIFO enable is visible (IIR bits 7-6); clear bits drop nothing (see the class comment)
        // and trigger levels do not matter when bytes interrupt as soon as they arrive.
        s[FCR] = value & FCR_ENABLE;
        return;
      case LCR:
        s[LCR_REG] = value;
        return;
      case MCR:
        s[MCR_REG] = value & MCR_MASK;
        this.updateIrq();
        return;
      case SCR:
        s[SCR_REG] = value;
        return;
      default:
        return; // LSR and MSR are read-only; writes to them are ignored as on the chip.
    }
  }
}
