// Subcommand dispatch for the `typevisor` CLI.
import { TypevisorError } from '../base/errors.js';
import { runCommand } from './run-command.js';
import { guestCommand } from './guest-command.js';
import { imageCommand } from './image-command.js';
import { execCommand } from './exec-command.js';
import { logsCommand, psCommand, stopCommand } from './vm-commands.js';

const USAGE = `Usage: typevisor <command> [options]

Commands:
  run [options] [-- CMD ARGS...]   boot a VM; with CMD, run it in the guest and exit with its status
                                   (--detach: in the background, named with --name)
  exec NAME -- CMD ARGS...         run a command in a detached VM through its guest agent
  ps                               list the detached VMs
  logs NAME                        print a detached VM's console output
  stop NAME                        shut a detached VM down (power button; --force: at once)
  guest build [NAME]               build (or fetch) a guest: default, debian-cloud
  image create NAME --size SIZE    make an ext4 disk image (--from debian: a bootable Debian for run --root)

Run 'typevisor <command> --help' for a command's options.`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'run':
        return await runCommand(rest);
      case 'guest':
        return await guestCommand(rest);
      case 'image':
        return await imageCommand(rest);
      case 'exec':
        return await execCommand(rest);
      case 'ps':
        return psCommand(rest);
      case 'logs':
        return logsCommand(rest);
      case 'stop':
        return await stopCommand(rest);
      case undefined:
      case '-h':
      case '--help':
      case 'help':
        process.stdout.write(`${USAGE}\n`);
        return command === undefined ? 2 : 0;
      default:
        process.stderr.write(`typevisor: unknown command '${command}'\n\n${USAGE}\n`);
        return 2;
    }
  } catch (e) {
    if (e instanceof TypevisorError) {
      process.stderr.write(`typevisor: ${e.message}\n`);
      return e.code === 'INVALID_ARGUMENT' ? 2 : 1;
    }
    throw e;
  }
}
