// `typevisor image create NAME --size SIZE [--from debian]`: make a disk image for --disk or --root.
import { parseArgs } from 'node:util';
import { TypevisorError } from '../base/errors.js';
import { parseSize } from '../base/size.js';
import { createImage, IMAGE_SOURCES, type ImageSource } from '../guest/disk-image.js';

export const IMAGE_USAGE = `Usage: typevisor image create NAME --size SIZE [--from debian]

Creates the raw disk image file NAME (never overwriting one) with an ext4 file system:
  --size SIZE     the image's size, e.g. 512M or 4G (a sparse file: host space is used as it fills)
  --from debian   fill it with a minimal Debian 12 (debootstrap: systemd, udev, a serial console
                  that logs root in); boot it with 'typevisor run --root NAME'. The first build
                  downloads Debian packages and needs root and debootstrap; later ones reuse the tree
                  cached under \${XDG_CACHE_HOME:-~/.cache}/typevisor/debian.
Without --from the file system is empty (a data disk for 'typevisor run --disk NAME').`;

export async function imageCommand(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '--help' || sub === '-h') {
    process.stdout.write(`${IMAGE_USAGE}\n`);
    return sub === undefined ? 2 : 0;
  }
  if (sub !== 'create') throw new TypevisorError('INVALID_ARGUMENT', `unknown image command '${sub}' — see 'typevisor image --help'`);
  let parsed;
  try {
    parsed = parseArgs({ args: rest, allowPositionals: true, options: { size: { type: 'string' }, from: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  } catch (e) {
    throw new TypevisorError('INVALID_ARGUMENT', `${e instanceof Error ? e.message : String(e)} — see 'typevisor image --help'`);
  }
  const v = parsed.values;
  if (v.help) {
    process.stdout.write(`${IMAGE_USAGE}\n`);
    return 0;
  }
  if (parsed.positionals.length !== 1) throw new TypevisorError('INVALID_ARGUMENT', 'give exactly one image NAME — see \'typevisor image --help\'');
  if (v.size === undefined) throw new TypevisorError('INVALID_ARGUMENT', '--size is required, e.g. --size 4G');
  const from = v.from ?? 'empty';
  if (!(IMAGE_SOURCES as readonly string[]).includes(from)) {
    throw new TypevisorError('INVALID_ARGUMENT', `--from '${from}' is not known — the only source is 'debian' (or leave --from out for an empty file system)`);
  }
  const path = await createImage({ path: parsed.positionals[0]!, sizeBytes: parseSize(v.size, '--size'), from: from as ImageSource },
    (line) => process.stderr.write(`${line}\n`));
  process.stdout.write(`${path}\n`);
  return 0;
}
