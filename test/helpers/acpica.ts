// Whether Debian's acpica-tools (iasl, acpiexec) are installed; tests that use them skip loudly otherwise.
import { spawnSync } from 'node:child_process';

export function hasAcpicaTools(): boolean {
  const found = ['iasl', 'acpiexec'].every((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0);
  if (!found) console.error('\n*** acpica-tools (iasl, acpiexec) not installed: ACPI decoding tests SKIPPED (apt-get install acpica-tools) ***\n');
  return found;
}
