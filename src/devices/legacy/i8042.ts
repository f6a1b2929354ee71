// The PS/2 controller (Intel 8042) subset Linux touches on a machine with no keyboard: status, command byte, reset.
import type { BusDevice } from '../bus-device.js';

/** Offsets from port 0x60: 0 = data, 4 = status (read) / command (write). */
const DATA = 0;
const STATUS_COMMAND = 4;

const STATUS_OUTPUT_FULL = 0x01;
const STATUS_SYSTEM_FLAG = 0x04;
const STATUS_COMMAND_LAST = 0x08;
/** Keyboard not inhibited (the "keylock" switch open); Linux warns when it is clear. */
const STATUS_UNLOCKED = 0x10;

const CMD_READ_COMMAND_BYTE = 0x20;
const CMD_WRITE_COMMAND_BYTE = 0x60;
const CMD_DISABLE_AUX = 0xa7;
const CMD_ENABLE_AUX = 0xa8;
const CMD_TEST_AUX = 0xa9;
const CMD_SELF_TEST = 0xaa;
const CMD_TEST_KBD = 0xab;
const CMD_DISABLE_KBD = 0xad;
const CMD_ENABLE_KBD = 0xae;
const CMD_READ_OUTPUT_PORT = 0xd0;
const CMD_WRITE_OUTPUT_PORT = 0xd1;
const CMD_PULSE_RESET = 0xfe;

export interface I8042Options {
  /** Called when the guest pulses the CPU reset line (command 0xFE): the machine resets. */
  onReset: () => void;
}

export class I8042 implements BusDevice {
  private commandByte = 0x45; // keyboard interrupt on, system flag, translation
  private outputPort = 0x01; // bit 0: reset line not asserted
  private output: number[] = [];
  private expectingData: number | undefined;
  private lastWasCommand = false;

  constructor(private readonly opts: I8042Options) {}

  read(offset: number, data: Uint8Array): void {
    data.fill(0);
    if (offset === DATA) {
      data[0] = this.output.shift() ?? 0;
    } else if (offset === STATUS_COMMAND) {
      data[0] = (this.output.length > 0 ? STATUS_OUTPUT_FULL : 0) | STATUS_SYSTEM_FLAG | STATUS_UNLOCKED |
        (this.lastWasCommand ? STATUS_COMMAND_LAST : 0);
    } else {
      data[0] = 0xff;
    }
  }

  write(offset: number, data: Uint8Array): void {
    const value = data[0] ?? 0;
    if (offset === STATUS_COMMAND) {
      this.lastWasCommand = true;
      this.command(value);
    } else if (offset === DATA) {
      this.lastWasCommand = false;
      this.dataWrite(value);
    }
  }

  private reply(byte: number): void {
    // Bounded: a guest that never reads cannot grow this.
    if (this.output.length < 16) this.output.push(byte);
  }

  private command(cmd: number): void {
    this.expectingData = undefined;
    switch (cmd) {
      case CMD_READ_COMMAND_BYTE: this.reply(this.commandByte); break;
      case CMD_WRITE_COMMAND_BYTE: this.expectingData = cmd; break;
      case CMD_WRITE_OUTPUT_PORT: this.expectingData = cmd; break;
      case CMD_READ_OUTPUT_PORT: this.reply(this.outputPort); break;
      case CMD_SELF_TEST: this.reply(0x55); break;
      case CMD_TEST_KBD: this.reply(0x00); break;
      // No mouse: the AUX port test fails, so Linux gives up on it.
      case CMD_TEST_AUX: this.reply(0xff); break;
      case CMD_DISABLE_AUX: this.commandByte |= 0x20; break;
      case CMD_ENABLE_AUX: this.commandByte &= ~0x20; break;
      case CMD_DISABLE_KBD: this.commandByte |= 0x10; break;
      case CMD_ENABLE_KBD: this.commandByte &= ~0x10; break;
      case CMD_PULSE_RESET: this.opts.onReset(); break;
      default:
        // Pulse-output-line commands (0xF0-0xFF): bit 0 clear pulses the reset line.
        if (cmd >= 0xf0 && (cmd & 1) === 0) this.opts.onReset();
        break;
    }
  }

  private dataWrite(value: number): void {
    const pending = this.expectingData;
    this.expectingData = undefined;
    if (pending === CMD_WRITE_COMMAND_BYTE) {
      this.commandByte = value;
    } else if (pending === CMD_WRITE_OUTPUT_PORT) {
      this.outputPort = value;
      if ((value & 1) === 0) this.opts.onReset();
    } else {
      // A byte for the (absent) keyboard: answer like a controller with nothing attached (timeout).
      this.reply(0xfe);
    }
  }
}
