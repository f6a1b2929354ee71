// `typevisor run`: boot one VM in the foreground with its console on the terminal.
import { parseArgs } from 'node:util';
import { TypevisorError } from '../base/errors.js';
import { parseSize } from '../base/size.js';
import { Vm } from '../vmm/vm.js';

export const RUN_USAGE = `Usage: typevisor run [options] [-- CMD ARGS...]

Boot a VM with its serial console on this terminal.

Options:
  --kernel FILE     guest kernel: ELF vmlinux (PVH entry) or bzImage (required for now)
  --initrd FILE     initial ramdisk
  --cmdline TEXT    appended to the kernel command line
  --cpus N          number of vCPUs (default 1)
  --memory SIZE     guest memory, e.g. 256M, 2G (default 256M)
  -h, --help        this help

The VM's exit status: 0 after the guest powers off or resets, 1 after a crash.`;

export async function runCommand(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        kernel: { type: 'string' },
        initrd: { type: 'string' },
        cmdline: { type: 'string' },
        cpus: { type: 'string' },
        memory: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    throw new TypevisorError('INVALID_ARGUMENT', `${e instanceof Error ? e.message : String(e)} — see 'typevisor run --help'`);
  }
  const { values } = parsed;
  if (values.help) {
    process.stdout.write(`${RUN_USAGE}\n`);
    return 0;
  }
  if (!values.kernel) throw new TypevisorError('INVALID_ARGUMENT', "--kernel FILE is required — see 'typevisor run --help'");
  const vcpus = values.cpus === undefined ? 1 : Number(values.cpus);
  if (!Number.isInteger(vcpus) || vcpus < 1) {
    throw new TypevisorError('INVALID_ARGUMENT', `--cpus '${values.cpus}' is not a whole number ≥ 1`);
  }
  const memoryBytes = parseSize(values.memory ?? '256M', '--memory', 'M');
  if (memoryBytes % 2 ** 20 !== 0) {
    throw new TypevisorError('INVALID_ARGUMENT', `--memory ${values.memory} is not a whole number of MiB`);
  }
  const vm = await Vm.create({
    kernel: values.kernel, initrd: values.initrd, cmdline: values.cmdline, vcpus, memoryMib: memoryBytes / 2 ** 20,
  });
  vm.console.pipe(process.stdout);
  const stdin = process.stdin;
  const onInput = (chunk: Buffer): void => vm.sendInput(chunk);
  if (stdin.isTTY) stdin.setRawMode(true);
  stdin.on('data', onInput);
  const onSignal = (): void => void vm.stop();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  await vm.start();
  const exit = await vm.waitForExit();
  stdin.off('data', onInput);
  if (stdin.isTTY) stdin.setRawMode(false);
  stdin.pause();
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  if (exit.reason === 'crash') {
    process.stderr.write(`\ntypevisor: the guest crashed: ${exit.detail}\n`);
    return 1;
  }
  return 0;
}
