// The PS/2 controller (Intel 8042) subset Linux touches on a machine with no keyboard or mouse: status, command byte, self tests, reset line.
import type { BusDevice } from '../bus-device.js';

/** Offsets from port 0x60: 0 = data, 4 = status (read) / command (write). */
const DATA = 0;
const STATUS_COMMAND = 4;

const STATUS_OUTPUT_FULL = 0x01;
const STATUS_SYSTEM_FLAG = 0x04;
const STATUS_COMMAND_LAST = 0x08;
// "Keyboard not inhibited": without it Linux warns "Keylock active" at boot.
const STATUS_UNLOCKED = 0x10;

const CTR_SYSTEM_FLAG = 0x04;
const CTR_KBD_DISABLE = 0x10;
const CTR_AUX_DISABLE = 0x20;

const CMD_READ_CTR = 0x20;
const CMD_WRITE_CTR = 0x60;
const CMD_DISABLE_AUX = 0xa7;
const CMD_ENABLE_AUX = 0xa8;
const CMD_TEST_AUX = 0xa9;
const CMD_SELF_TEST = 0xaa;
const CMD_TEST_KBD = 0xab;
const CMD_DISABLE_KBD = 0xad;
const CMD_ENABLE_KBD = 0xae;
const CMD_READ_OUTPUT_PORT = 0xd0;
const CMD_WRITE_OUTPUT_PORT = 0xd1;
const CMD_WRITE_KBD_OUTPUT = 0xd2;
const CMD_WRITE_AUX_OUTPUT = 0xd3; // Linux's AUX_LOOP
const CMD_WRITE_AUX = 0xd4;
const CMD_PULSE_RESET = 0xfe;

const SELF_TEST_OK = 0x55;
const PORT_TEST_OK = 0x00;
// "Clock line stuck high": an AUX port test answer Linux does not excuse (it excuses 0x00, 0xFA, 0xFF).
const PORT_TEST_CLOCK_STUCK = 0x02;

/** Byte slots of the state. */
const CTR = 0;
const OUTPUT_PORT = 1;
const PENDING_CMD = 2; // the command awaiting its data byte on port 0x60, or 0
const LAST_WAS_COMMAND = 3;
const OUT_FULL = 4;
const OUT_BYTE = 5;
const STATE_BYTES = 8;

export interface I8042Options {
  /** Called when the guest pulses the CPU reset line (command 0xFE, `reboot=k`): the machine resets. */
  onReset: () => void;
  /**
   * State shared by every vCPU thread's I8042 (from `I8042.createState()`); a private one when absent.
   * Linux serializes its controller accesses under i8042_lock, so no host-side lock is needed.
   */
  state?: SharedArrayBuffer;
}

/**
 * No keyboard and no mouse are attached and no interrupts are wired: controller commands answer
 * at once (input buffer never full) so Linux's probe neither hangs nor times out. The AUX port
 * fails its tests, so Linux gives up on a mouse even without `i8042.noaux`.
 */
export class I8042 implements BusDevice {
  private readonly s: Uint8Array;
  private readonly onReset: () => void;

  /** Fresh controller state: keyboard interrupt and translation on, system flag set (POST passed). */
  static createState(): SharedArrayBuffer {
    const sab = new SharedArrayBuffer(STATE_BYTES);
    const s = new Uint8Array(sab);
    s[CTR] = 0x45;
    s[OUTPUT_PORT] = 0x01; // bit 0: the reset line is not asserted
    return sab;
  }

  constructor(opts: I8042Options) {
    this.s = new Uint8Array(opts.state ?? I8042.createState(), 0, STATE_BYTES);
    this.onReset = opts.onReset;
  }

  read(offset: number, data: Uint8Array): void {
    const s = this.s;
    let value = 0xff;
    if (offset === DATA) {
      value = s[OUT_BYTE]!;
      s[OUT_FULL] = 0;
    } else if (offset === STATUS_COMMAND) {
      value = (s[OUT_FULL] ? STATUS_OUTPUT_FULL : 0) | (s[CTR]! & CTR_SYSTEM_FLAG ? STATUS_SYSTEM_FLAG : 0) |
        (s[LAST_WAS_COMMAND] ? STATUS_COMMAND_LAST : 0) | STATUS_UNLOCKED;
    }
    data.fill(0);
    data[0] = value;
  }

  write(offset: number, data: Uint8Array): void {
    const value = data[0] ?? 0;
    if (offset === STATUS_COMMAND) {
      this.s[LAST_WAS_COMMAND] = 1;
      this.command(value);
    } else if (offset === DATA) {
      this.s[LAST_WAS_COMMAND] = 0;
      this.dataWrite(value);
    }
  }

  /**
   * Puts a byte in the (single-byte) output buffer. A new reply replaces an unread one, so a byte
   * Linux chose not to read (its AUX loop test bails out on the status) never poisons the next command.
   */
  private reply(byte: number): void {
    this.s[OUT_BYTE] = byte;
    this.s[OUT_FULL] = 1;
  }

  private command(cmd: number): void {
    const s = this.s;
    s[PENDING_CMD] = 0;
    switch (cmd) {
      case CMD_READ_CTR: this.reply(s[CTR]!); break;
      case CMD_WRITE_CTR:
      case CMD_WRITE_OUTPUT_PORT:
      case CMD_WRITE_KBD_OUTPUT:
      case CMD_WRITE_AUX_OUTPUT:
      case CMD_WRITE_AUX:
        s[PENDING_CMD] = cmd;
        break;
      case CMD_READ_OUTPUT_PORT: this.reply(s[OUTPUT_PORT]!); break;
      case CMD_SELF_TEST: this.reply(SELF_TEST_OK); break;
      case CMD_TEST_KBD: this.reply(PORT_TEST_OK); break;
      case CMD_TEST_AUX: this.reply(PORT_TEST_CLOCK_STUCK); break;
      // Linux toggles these and reads the CTR back to check the bit followed (i8042_toggle_aux).
      case CMD_DISABLE_AUX: s[CTR] = s[CTR]! | CTR_AUX_DISABLE; break;
      case CMD_ENABLE_AUX: s[CTR] = s[CTR]! & ~CTR_AUX_DISABLE; break;
      case CMD_DISABLE_KBD: s[CTR] = s[CTR]! | CTR_KBD_DISABLE; break;
      case CMD_ENABLE_KBD: s[CTR] = s[CTR]! & ~CTR_KBD_DISABLE; break;
      case CMD_PULSE_RESET: this.onReset(); break;
      default:
        // Other pulse-output-line commands (0xF0-0xFD): bit 0 clear pulses the reset line too.
        if (cmd >= 0xf0 && (cmd & 1) === 0) this.onReset();
        break;
    }
  }

  private dataWrite(value: number): void {
    const s = this.s;
    const pending = s[PENDING_CMD];
    s[PENDING_CMD] = 0;
    switch (pending) {
      case CMD_WRITE_CTR:
        s[CTR] = value;
        break;
      case CMD_WRITE_OUTPUT_PORT:
        s[OUTPUT_PORT] = value;
        if ((value & 1) === 0) this.onReset();
        break;
      case CMD_WRITE_KBD_OUTPUT:
        this.reply(value); // appears as if the keyboard had sent it
        break;
      case CMD_WRITE_AUX_OUTPUT:
        // Appears without the AUX-data status bit: there is no AUX port, so Linux's loop test fails at once.
        this.reply(value);
        break;
      default:
        // For the absent keyboard (or, after 0xD4, the absent mouse): the byte goes nowhere.
        break;
    }
  }
}
