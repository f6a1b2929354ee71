// The host's runtime directory for Typevisor's per-VM and per-bridge state (sockets, pid files,
// leases): $TYPEVISOR_RUNTIME_DIR, else /run/typevisor for root, else $XDG_RUNTIME_DIR/typevisor,
// else /tmp/typevisor-<uid>.
import { join } from 'node:path';

export function runtimeRoot(): string {
  const override = process.env['TYPEVISOR_RUNTIME_DIR'];
  if (override) return override;
  if (process.getuid?.() === 0) return '/run/typevisor';
  const xdg = process.env['XDG_RUNTIME_DIR'];
  return xdg ? join(xdg, 'typevisor') : `/tmp/typevisor-${process.getuid?.() ?? 'user'}`;
}
