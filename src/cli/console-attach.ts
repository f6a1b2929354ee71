// Attaches a VM's serial console to a terminal: raw mode, Ctrl-A escapes (x quit, h help), as in QEMU.
import type { Vm } from '../vmm/vm.js';

const CTRL_A = 0x01;
const HELP = '\r\nCtrl-A h  this help\r\nCtrl-A x  stop the VM and quit\r\nCtrl-A a  send Ctrl-A to the guest\r\n';

/** Returns a function that detaches and says whether the user quit with Ctrl-A x. */
export function attachConsole(vm: Vm, input: NodeJS.ReadStream, output: NodeJS.WriteStream): () => boolean {
  let escape = false;
  let quit = false;
  const onOutput = (chunk: Buffer): void => { output.write(chunk); };
  const onInput = (chunk: Buffer): void => {
    const forward: number[] = [];
    for (const byte of chunk) {
      if (escape) {
        escape = false;
        if (byte === 0x78 /* x */) {
          quit = true;
          void vm.stop();
          return;
        }
        if (byte === 0x68 /* h */) output.write(HELP);
        else if (byte === 0x61 /* a */ || byte === CTRL_A) forward.push(CTRL_A);
        continue;
      }
      if (byte === CTRL_A) escape = true;
      else forward.push(byte);
    }
    if (forward.length > 0) vm.sendInput(Uint8Array.from(forward));
  };
  vm.console.on('data', onOutput);
  if (input.isTTY) input.setRawMode(true);
  input.on('data', onInput);
  input.resume();
  return () => {
    vm.console.off('data', onOutput);
    input.off('data', onInput);
    if (input.isTTY) input.setRawMode(false);
    input.pause();
    return quit;
  };
}
