// `typevisor run`: boot one VM in the foreground — run a command in it (like `docker run`) or attach its console.
import { parseArgs } from 'node:util';
import { TypevisorError } from '../base/errors.js';
import { parseSize } from '../base/size.js';
import { Vm, type VmExit } from '../vmm/vm.js';
import type { NetOptions } from '../vmm/virtio-devices.js';
import { NET_HELP, parseNetSpec } from './net-spec.js';
import { guestAssets, GUEST_NAMES, type GuestAssets } from '../guest/default-guest.js';
import { CommandConsoleParser, encodeCommand } from '../guest/command-protocol.js';
import { attachConsole } from './console-attach.js';
import { DETACHED_CHILD_FLAG, runDetachedChild, startDetached } from './detached-vm.js';

export const RUN_USAGE = `Usage: typevisor run [options] [-- CMD ARGS...]

Boot a VM. With CMD, run it in the guest: its output is printed here and typevisor exits with its
status (127 if the guest has no such command). Without CMD, the guest's console is attached to this
terminal: Ctrl-A x quits, Ctrl-A h helps.

Options:
  --guest NAME      guest to boot: ${GUEST_NAMES.join(' | ')} (default: default, built on first use)
  --kernel FILE     boot this kernel instead (ELF vmlinux with a PVH note, or bzImage)
  --initrd FILE     initial ramdisk for --kernel
  --cmdline TEXT    appended to the kernel command line
  --cpus N          number of vCPUs (default 1)
  --memory SIZE     guest memory, e.g. 256M or 2G (default 256M)
  --disk FILE[,ro]  attach a raw disk image as a virtio-blk drive (/dev/vda, vdb, … in order;
                    repeatable; ,ro = read-only). The image is locked while the VM runs.
${NET_HELP}
  --root FILE       boot with this ext4 image as / (e.g. from 'typevisor image create --from debian'):
                    it becomes /dev/vda, before any --disk, and the kernel starts its /sbin/init
                    (the default guest's kernel unless --kernel is given)
  --quiet           do not show the boot log
  --no-reboot       end when the guest reboots, instead of booting it again
  -d, --detach      run the VM in the background (no CMD): 'typevisor exec NAME -- CMD' runs commands
                    in it, 'typevisor ps' lists, 'typevisor logs NAME' shows its console, 'typevisor
                    stop NAME' shuts it down
  --name NAME       the detached VM's name (default: vm-<random>)
  --balloon         add a virtio memory balloon (statistics; free memory given back to the host)
  -h, --help        this help`;

export interface RunOptions {
  assets: GuestAssets;
  /** Booting from a root disk: the guest's initramfs stays out. */
  root: boolean;
  cmdline: string;
  vcpus: number;
  memoryMib: number;
  quiet: boolean;
  noReboot: boolean;
  disks: { path: string; readOnly: boolean }[];
  nets: NetOptions[];
  balloon: boolean;
  detach: boolean;
  name: string | undefined;
  command: string[];
}

function parse(argv: string[]): RunOptions | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        guest: { type: 'string' }, kernel: { type: 'string' }, initrd: { type: 'string' }, cmdline: { type: 'string' },
        cpus: { type: 'string' }, memory: { type: 'string' }, quiet: { type: 'boolean' }, 'no-reboot': { type: 'boolean' },
        disk: { type: 'string', multiple: true }, root: { type: 'string' }, net: { type: 'string', multiple: true },
        detach: { type: 'boolean', short: 'd' }, name: { type: 'string' }, balloon: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    throw new TypevisorError('INVALID_ARGUMENT', `${e instanceof Error ? e.message : String(e)} — see 'typevisor run --help'`);
  }
  const v = parsed.values;
  if (v.help) return 'help';
  if (v.detach && parsed.positionals.length > 0) {
    throw new TypevisorError('INVALID_ARGUMENT', "--detach runs a VM without a command: start it, then run commands in it with 'typevisor exec NAME -- CMD'");
  }
  if (v.name !== undefined && !v.detach) throw new TypevisorError('INVALID_ARGUMENT', '--name names a detached VM: add --detach');
  const vcpus = v.cpus === undefined ? 1 : Number(v.cpus);
  if (!/^\d+$/.test(v.cpus ?? '1') || !Number.isInteger(vcpus) || vcpus < 1) {
    throw new TypevisorError('INVALID_ARGUMENT', `--cpus '${v.cpus}' is not a whole number of vCPUs ≥ 1`);
  }
  const memoryBytes = parseSize(v.memory ?? '256M', '--memory', 'M');
  if (memoryBytes % 2 ** 20 !== 0) throw new TypevisorError('INVALID_ARGUMENT', `--memory ${v.memory} is not a whole number of MiB`);
  if (v.initrd && !v.kernel) throw new TypevisorError('INVALID_ARGUMENT', '--initrd goes with --kernel');
  if (v.kernel && v.guest) throw new TypevisorError('INVALID_ARGUMENT', 'give either --kernel or --guest, not both');
  if (v.guest && !(GUEST_NAMES as readonly string[]).includes(v.guest)) {
    throw new TypevisorError('INVALID_ARGUMENT', `unknown guest '${v.guest}' — choose one of: ${GUEST_NAMES.join(', ')}`);
  }
  const disks = (v.disk ?? []).map((spec) => {
    const m = /^(.+?)(,ro)?$/.exec(spec);
    if (!m || m[1]!.includes(',')) throw new TypevisorError('INVALID_ARGUMENT', `--disk '${spec}' — write FILE or FILE,ro`);
    return { path: m[1]!, readOnly: m[2] !== undefined };
  });
  const nets = (v.net ?? []).map(parseNetSpec);
  let rootCmdline = '';
  if (v.root !== undefined) {
    if (v.guest !== undefined && v.guest !== 'default') {
      throw new TypevisorError('INVALID_ARGUMENT', `--root boots the default guest's kernel (or --kernel); the ${v.guest} guest cannot mount a root disk`);
    }
    if (v.initrd) throw new TypevisorError('INVALID_ARGUMENT', '--root boots without an initrd: leave --initrd out');
    disks.unshift({ path: v.root, readOnly: false });
    rootCmdline = 'root=/dev/vda rw rootfstype=ext4';
  }
  return {
    disks,
    nets,
    assets: v.kernel ? { name: 'custom', kernel: v.kernel, initrd: v.initrd } : { name: v.guest ?? 'default', kernel: '' },
    root: v.root !== undefined,
    cmdline: [rootCmdline, v.cmdline ?? ''].filter((s) => s !== '').join(' '),
    vcpus,
    memoryMib: memoryBytes / 2 ** 20,
    quiet: v.quiet ?? false,
    noReboot: v['no-reboot'] ?? false,
    balloon: v.balloon ?? false,
    detach: v.detach ?? false,
    name: v.name,
    command: parsed.positionals,
  };
}

export async function runCommand(argv: string[]): Promise<number> {
  if (argv[0] === DETACHED_CHILD_FLAG) return runDetachedChild();
  const opts = parse(argv);
  if (opts === 'help') {
    process.stdout.write(`${RUN_USAGE}\n`);
    return 0;
  }
  if (opts.assets.name !== 'custom') {
    opts.assets = await guestAssets(opts.assets.name, (line) => { if (!opts.quiet) process.stderr.write(`${line}\n`); });
    if (opts.root) opts.assets = { ...opts.assets, initrd: undefined };
  }
  if (opts.detach) return startDetached(opts);
  return opts.command.length > 0 ? runGuestCommand(opts) : runInteractive(opts);
}

export function createVm(opts: RunOptions, extraCmdline: string, vsockSocketPath?: string): Promise<Vm> {
  return Vm.create({
    kernel: opts.assets.kernel, initrd: opts.assets.initrd, vcpus: opts.vcpus, memoryMib: opts.memoryMib, disks: opts.disks, nets: opts.nets,
    cmdline: [opts.cmdline, extraCmdline].filter((s) => s !== '').join(' '), balloon: opts.balloon,
    ...(vsockSocketPath ? { vsock: { socketPath: vsockSocketPath } } : {}),
  });
}

/**
 * Ends the VM when this process is interrupted, or when whoever reads our output has gone (EPIPE
 * on stdout/stderr, e.g. `typevisor run -- yes | head -1`), so no guest outlives its purpose.
 */
function stopOnSignals(vm: Vm): () => void {
  const stop = (): void => void vm.stop();
  const onPipeError = (e: NodeJS.ErrnoException): void => {
    if (e.code === 'EPIPE') stop();
  };
  process.stdout.on('error', onPipeError);
  process.stderr.on('error', onPipeError);
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  process.once('SIGHUP', stop);
  // SIGUSR2 prints every vCPU's registers and the bytes at RIP (for a guest that seems stuck).
  const dump = (): void => void vm.dumpState().then((t) => process.stderr.write(`\n${t.join('\n')}\n`));
  process.on('SIGUSR2', dump);
  return () => {
    process.stdout.off('error', onPipeError);
    process.stderr.off('error', onPipeError);
    process.off('SIGUSR2', dump);
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
    process.off('SIGHUP', stop);
  };
}

async function runGuestCommand(opts: RunOptions): Promise<number> {
  let encoded: string;
  try {
    encoded = encodeCommand(opts.command);
  } catch (e) {
    throw new TypevisorError('INVALID_ARGUMENT', e instanceof Error ? e.message : String(e));
  }
  const vm = await createVm(opts, `${encoded}${opts.quiet ? ' quiet' : ''}`);
  const parser = new CommandConsoleParser();
  let status: number | undefined;
  vm.console.on('data', (chunk: Buffer) => {
    for (const e of parser.push(chunk.toString('utf8'))) {
      if (e.kind === 'boot-log' && !opts.quiet) process.stderr.write(e.text);
      else if (e.kind === 'output') process.stdout.write(e.text);
      else if (e.kind === 'exit') status = e.status;
    }
  });
  const release = stopOnSignals(vm);
  await vm.start();
  const exit = await vm.waitForExit();
  release();
  if (status !== undefined) return status;
  return reportEnd(exit, 'before the command finished');
}

function reportEnd(exit: VmExit, when: string): number {
  const why = exit.reason === 'crash' ? `the guest crashed ${when}: ${exit.detail}` : `the guest ended (${exit.reason}) ${when}: ${exit.detail}`;
  process.stderr.write(`\ntypevisor: ${why}\n`);
  return exit.reason === 'stopped' ? 130 : 1;
}

async function runInteractive(opts: RunOptions): Promise<number> {
  for (;;) {
    const vm = await createVm(opts, '');
    const detach = attachConsole(vm, process.stdin, process.stdout);
    const release = stopOnSignals(vm);
    await vm.start();
    const exit = await vm.waitForExit();
    release();
    const quitByUser = detach();
    if (quitByUser) return 0;
    if (exit.reason === 'poweroff') return 0;
    if (exit.reason === 'reset') {
      if (opts.noReboot) {
        process.stderr.write('\ntypevisor: the guest reset (reason: reset); not rebooting (--no-reboot)\n');
        return 0;
      }
      process.stderr.write('\ntypevisor: the guest reset; booting it again\n');
      continue;
    }
    return reportEnd(exit, '');
  }
}
