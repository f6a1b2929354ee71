// `typevisor guest build|path`: build the default guest (or fetch the Debian cloud kernel) and say where it is.
import { TypevisorError } from '../base/errors.js';
import { guestAssets, GUEST_NAMES } from '../guest/default-guest.js';

export const GUEST_USAGE = `Usage: typevisor guest build [NAME]

Builds a guest from Debian packages and caches it under \${XDG_CACHE_HOME:-~/.cache}/typevisor:
  default        a small kernel compiled from linux-source with a busybox initramfs (minutes, once)
  debian-cloud   Debian's stock cloud kernel, downloaded with apt-get
Prints the guest's kernel (and initrd) paths. 'typevisor run' builds the default guest on first use.`;

export async function guestCommand(argv: string[]): Promise<number> {
  const [sub, name = 'default', ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h') {
    process.stdout.write(`${GUEST_USAGE}\n`);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'build' || rest.length > 0) {
    throw new TypevisorError('INVALID_ARGUMENT', `usage: typevisor guest build [${GUEST_NAMES.join('|')}]`);
  }
  const assets = await guestAssets(name, (line) => process.stderr.write(`${line}\n`));
  process.stdout.write(`kernel ${assets.kernel}\n${assets.initrd ? `initrd ${assets.initrd}\n` : ''}`);
  return 0;
}
