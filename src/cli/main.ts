// Subcommand dispatch for the `typevisor` CLI.
import { TypevisorError } from '../base/errors.js';
import { runCommand } from './run-command.js';
import { guestCommand } from './guest-command.js';
import { imageCommand } from './image-command.js';

const USAGE = `Usage: typevisor <command> [options]

Commands:
  run [options] [-- CMD ARGS...]   boot a VM; with CMD, run it in the guest and exit with its status
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
