// `typevisor ps`, `stop NAME`, `logs NAME`: the detached VMs of this host (see vm-registry.ts).
import { parseArgs } from 'node:util';
import { existsSync, readFileSync } from 'node:fs';
import { TypevisorError } from '../base/errors.js';
import { consoleLogPath, listVms, requireVm, vmDir } from './vm-registry.js';

type Flags = Record<string, { type: 'string' | 'boolean' }>;
interface Parsed { values: Record<string, string | boolean | undefined>; positionals: string[] }

/** Parses a subcommand's arguments; undefined when --help was asked for (and printed). */
function args(argv: string[], usage: string, options: Flags = {}): Parsed | undefined {
  let parsed: Parsed;
  try {
    const r = parseArgs({ args: argv, allowPositionals: true, options: { ...options, help: { type: 'boolean', short: 'h' } } });
    parsed = { values: r.values, positionals: r.positionals };
  } catch (e) {
    throw new TypevisorError('INVALID_ARGUMENT', `${e instanceof Error ? e.message : String(e)}\n${usage}`);
  }
  if (parsed.values['help']) {
    process.stdout.write(`${usage}\n`);
    return undefined;
  }
  return parsed;
}

export function psCommand(argv: string[]): number {
  const parsed = args(argv, 'Usage: typevisor ps [--json]   list the detached VMs', { json: { type: 'boolean' } });
  if (!parsed) return 0;
  const vms = listVms();
  if (parsed.values['json']) {
    process.stdout.write(`${JSON.stringify(vms)}\n`);
    return 0;
  }
  const rows = [['NAME', 'STATE', 'PID', 'CPUS', 'MEMORY', 'GUEST', 'BOOTS', 'UP']];
  for (const v of vms) {
    const up = Math.round((Date.now() - Date.parse(v.started)) / 1000);
    rows.push([v.name, v.state, String(v.pid), String(v.cpus), `${v.memoryMib}M`, v.guest, String(v.boots), `${up}s`]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  for (const r of rows) process.stdout.write(`${r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()}\n`);
  return 0;
}

const STOP_USAGE = `Usage: typevisor stop [--timeout SECONDS] [--force] NAME

Presses the VM's ACPI power button and waits (default 60 s) for the guest to shut down; after that,
or at once with --force, the VM is stopped hard.`;

export async function stopCommand(argv: string[]): Promise<number> {
  const parsed = args(argv, STOP_USAGE, { timeout: { type: 'string' }, force: { type: 'boolean' } });
  if (!parsed) return 0;
  const [name] = parsed.positionals;
  if (name === undefined || parsed.positionals.length > 1) throw new TypevisorError('INVALID_ARGUMENT', STOP_USAGE);
  const timeoutText = String(parsed.values['timeout'] ?? '60');
  if (!/^\d+$/.test(timeoutText)) throw new TypevisorError('INVALID_ARGUMENT', `--timeout '${timeoutText}' is not a whole number of seconds`);
  const info = requireVm(name);
  // The VM's process turns SIGTERM into a power-button press and SIGINT into a hard stop.
  process.kill(info.pid, parsed.values['force'] ? 'SIGINT' : 'SIGTERM');
  const deadline = Date.now() + Number(timeoutText) * 1000;
  let forced = Boolean(parsed.values['force']);
  while (existsSync(vmDir(name))) {
    if (!forced && Date.now() > deadline) {
      process.stderr.write(`typevisor: ${name} did not shut down within ${timeoutText} s; stopping it hard\n`);
      process.kill(info.pid, 'SIGINT');
      forced = true;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return 0;
}

export function logsCommand(argv: string[]): number {
  const parsed = args(argv, 'Usage: typevisor logs NAME   print the console output of a detached VM');
  if (!parsed) return 0;
  const [name] = parsed.positionals;
  if (name === undefined) throw new TypevisorError('INVALID_ARGUMENT', 'Usage: typevisor logs NAME');
  requireVm(name);
  process.stdout.write(readFileSync(consoleLogPath(name)));
  return 0;
}
