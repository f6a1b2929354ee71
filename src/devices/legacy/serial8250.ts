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
const IIR_NONE = 0x01;
const IIR_THRI = 0x02;
const IIR_RDI = 0x04;
const IIR_FIFO_BITS = 0xc0;
const FCR_ENABLE = 0x01;
const FCR_CLEAR_RX = 0x02;
const LCR_DLAB = 0x80;
const MCR_DTR = 0x01;
const MCR_RTS = 0x02;
const MCR_OUT1 = 0x04;
const MCR_OUT2 = 0x08;
const MCR_LOOP = 0x10;
const LSR_DR = 0x01;
const LSR_THRE = 0x20;
const LSR_TEMT = 0x40;
const MSR_CTS = 0x10;
const MSR_DSR = 0x20;
const MSR_RI = 0x40;
const MSR_DCD = 0x80;

/** Int32 slots of the shared state. */
const S = { LOCK: 0, IER: 1, THRE_PENDING: 2, LCR: 3, MCR: 4, SCR: 5, DLL: 6, DLM: 7, FCR: 8, RX_HEAD: 9, RX_COUNT: 10, IRQ_LEVEL: 11, WORDS: 16 } as const;
/** Bytes of buffered input beyond what the guest has read (the FIFO plus a host-side backlog). */
export const SERIAL_INPUT_CAPACITY = 64 * 1024;

export interface Serial8250Options {
  onOutput: (byte: number) => void;
  irq: IrqLine;
}

/**
 * The UART is touched by vCPU threads (register accesses) and the main thread (console input),
 * so all its state lives in one SharedArrayBuffer; each thread builds its own Serial8250 over it.
 * Every operation holds a spinlock for a few instructions.
 */
export class Serial8250 implements BusDevice {
  private readonly s: Int32Array;
  private readonly rx: Uint8Array;

  static createState(): SharedArrayBuffer {
    const sab = new SharedArrayBuffer(S.WORDS * 4 + SERIAL_INPUT_CAPACITY);
    const s = new Int32Array(sab, 0, S.WORDS);
    s[S.THRE_PENDING] = 0;
    s[S.LCR] = 0x03;
    s[S.DLL] = 0x0c; // 9600 baud, as after a BIOS
    return sab;
  }

  constructor(state: SharedArrayBuffer, private readonly opts: Serial8250Options) {
    this.s = new Int32Array(state, 0, S.WORDS);
    this.rx = new Uint8Array(state, S.WORDS * 4, SERIAL_INPUT_CAPACITY);
  }

  private lock(): void {
    while (Atomics.compareExchange(this.s, S.LOCK, 0, 1) !== 0) {
      // Critical sections are a few dozen instructions; spinning is cheaper than a futex.
    }
  }

  private unlock(): void {
    Atomics.store(this.s, S.LOCK, 0);
  }

  private locked<T>(fn: () => T): T {
    this.lock();
    try {
      return fn();
    } finally {
      this.unlock();
    }
  }

  /** Adds console input; returns how many bytes fit (the rest should be retried later). */
  enqueueInput(bytes: Uint8Array): number {
    return this.locked(() => {
      const s = this.s;
      const n = Math.min(bytes.length, SERIAL_INPUT_CAPACITY - s[S.RX_COUNT]!);
      for (let i = 0; i < n; i++) this.pushRx(bytes[i]!);
      this.updateIrq();
      return n;
    });
  }

  /** Bytes of input not yet read by the guest. */
  get pendingInput(): number {
    return Atomics.load(this.s, S.RX_COUNT);
  }

  private pushRx(byte: number): void {
    const s = this.s;
    if (s[S.RX_COUNT]! >= SERIAL_INPUT_CAPACITY) return; // overrun: drop
    this.rx[(s[S.RX_HEAD]! + s[S.RX_COUNT]!) % SERIAL_INPUT_CAPACITY] = byte;
    s[S.RX_COUNT]!++;
  }

  private popRx(): number {
    const s = this.s;
    if (s[S.RX_COUNT] === 0) return 0;
    const b = this.rx[s[S.RX_HEAD]!]!;
    s[S.RX_HEAD] = (s[S.RX_HEAD]! + 1) % SERIAL_INPUT_CAPACITY;
    s[S.RX_COUNT]!--;
    return b;
  }

  /** The highest-priority pending interrupt's IIR code, or IIR_NONE. */
  private pendingIir(): number {
    const s = this.s;
    if (s[S.IER]! & IER_RDI && s[S.RX_COUNT]! > 0) return IIR_RDI;
    if (s[S.IER]! & IER_THRI && s[S.THRE_PENDING]) return IIR_THRI;
    return IIR_NONE;
  }

  /** Drives the IRQ line: an interrupt is pending and OUT2 gates it through (as on a PC). */
  private updateIrq(): void {
    const s = this.s;
    const level = this.pendingIir() !== IIR_NONE && (s[S.MCR]! & MCR_OUT2) !== 0 ? 1 : 0;
    if (level !== s[S.IRQ_LEVEL]) {
      s[S.IRQ_LEVEL] = level;
      this.opts.irq.set(level === 1);
    }
  }

  read(offset: number, data: Uint8Array): void {
    data.fill(0);
    data[0] = this.locked(() => this.readRegister(offset));
  }

  write(offset: number, data: Uint8Array): void {
    const value = data[0] ?? 0;
    this.locked(() => this.writeRegister(offset, value));
  }

  private readRegister(offset: number): number {
    const s = this.s;
    const dlab = (s[S.LCR]! & LCR_DLAB) !== 0;
    switch (offset) {
      case RBR_THR_DLL: {
        if (dlab) return s[S.DLL]!;
        const b = this.popRx();
        this.updateIrq();
        return b;
      }
      case IER_DLM:
        return dlab ? s[S.DLM]! : s[S.IER]!;
      case IIR_FCR: {
        const iir = this.pendingIir();
        // Reading IIR while it reports THRE acknowledges that interrupt.
        if (iir === IIR_THRI) {
          s[S.THRE_PENDING] = 0;
          this.updateIrq();
        }
        return iir | (s[S.FCR]! & FCR_ENABLE ? IIR_FIFO_BITS : 0);
      }
      case LCR:
        return s[S.LCR]!;
      case MCR:
        return s[S.MCR]!;
      case LSR:
        return (s[S.RX_COUNT]! > 0 ? LSR_DR : 0) | LSR_THRE | LSR_TEMT;
      case MSR: {
        const mcr = s[S.MCR]!;
        if (mcr & MCR_LOOP) {
          return (mcr & MCR_DTR ? MSR_DSR : 0) | (mcr & MCR_RTS ? MSR_CTS : 0) |
            (mcr & MCR_OUT1 ? MSR_RI : 0) | (mcr & MCR_OUT2 ? MSR_DCD : 0);
        }
        return MSR_DCD | MSR_DSR | MSR_CTS;
      }
      case SCR:
        return s[S.SCR]!;
      default:
        return 0xff;
    }
  }

  private writeRegister(offset: number, value: number): void {
    const s = this.s;
    const dlab = (s[S.LCR]! & LCR_DLAB) !== 0;
    switch (offset) {
      case RBR_THR_DLL:
        if (dlab) {
          s[S.DLL] = value;
          return;
        }
        if (s[S.MCR]! & MCR_LOOP) this.pushRx(value);
        else this.opts.onOutput(value);
        // We transmit instantly, so the holding register is empty again at once.
        s[S.THRE_PENDING] = 1;
        this.updateIrq();
        return;
      case IER_DLM:
        if (dlab) {
          s[S.DLM] = value;
          return;
        }
        // Enabling THRE interrupts while the holding register is empty raises one (Linux relies on it).
        if (value & IER_THRI && !(s[S.IER]! & IER_THRI)) s[S.THRE_PENDING] = 1;
        s[S.IER] = value & 0x0f;
        this.updateIrq();
        return;
      case IIR_FCR:
        s[S.FCR] = value & FCR_ENABLE;
        if (value & FCR_CLEAR_RX) {
          s[S.RX_HEAD] = 0;
          s[S.RX_COUNT] = 0;
        }
        this.updateIrq();
        return;
      case LCR:
        s[S.LCR] = value;
        return;
      case MCR:
        s[S.MCR] = value & 0x1f;
        this.updateIrq();
        return;
      case SCR:
        s[S.SCR] = value;
        return;
      default:
        return; // LSR and MSR are read-only.
    }
  }
}
