// Where built and downloaded guest assets are cached: ${XDG_CACHE_HOME:-~/.cache}/typevisor.
import { homedir } from 'node:os';
import { join } from 'node:path';

export function cacheRoot(): string {
  const xdg = process.env['XDG_CACHE_HOME'];
  return join(xdg && xdg !== '' ? xdg : join(homedir(), '.cache'), 'typevisor');
}
