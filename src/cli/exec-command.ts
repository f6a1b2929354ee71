// `typevisor exec NAME -- CMD...`: run a command in a detached VM through its guest agent, with its
// output streamed here and its exit status as ours (like `docker exec`).
import { parseArgs } from 'node:util';
import { TypevisorError } from '../base/errors.js';
import { GuestAgent } from '../vmm/guest-agent.js';
import { requireVm, vsockPath } from './vm-registry.js';

export const EXEC_USAGE = `Usage: typevisor exec [options] NAME [--] CMD [ARGS...]
       typevisor exec [options] --socket PATH [--] CMD [ARGS...]

Run CMD in the VM NAME (started by 'typevisor run --detach --name NAME') through its guest agent —
or in any VM whose vsock socket is PATH (a library VM's vm.vsockSocketPath). Its stdout and stderr
are streamed here; typevisor exits with its status (127: no such command).

Options:
  -i, --interactive   pass this process's stdin to the command (default: none)
  -e, --env K=V       set an environment variable (repeatable)
  -w, --cwd DIR       working directory in the guest
  --timeout SECONDS   kill the command after this long (exit 124)
  --wait SECONDS      wait this long for a booting guest's agent (default 300; 0: do not wait)
  -h, --help          this help`;

/** Options that take a value: the token after them is theirs, not the VM's name. */
const VALUE_OPTIONS = new Set(['-e', '--env', '-w', '--cwd', '--timeout', '--wait', '--socket']);

/** exec's own options end at the VM's name (as docker exec's do): everything after it is the command. */
function splitAtName(argv: string[]): [string[], string[]] {
  const bySocket = argv.some((a) => a === '--socket' || a.startsWith('--socket='));
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') return [argv.slice(0, i), argv.slice(i + 1)];
    // With --socket there is no name: the first word is the command.
    if (bySocket && !a.startsWith('-')) return [argv.slice(0, i), argv.slice(i)];
    if (!a.startsWith('-')) {
      const rest = argv.slice(i + 1);
      return [argv.slice(0, i + 1), rest[0] === '--' ? rest.slice(1) : rest];
    }
    if (VALUE_OPTIONS.has(a)) i++;
  }
  return [argv, []];
}

export async function execCommand(argv: string[]): Promise<number> {
  const [own, command] = splitAtName(argv);
  let parsed;
  try {
    parsed = parseArgs({
      args: own, allowPositionals: true,
      options: {
        interactive: { type: 'boolean', short: 'i' }, env: { type: 'string', short: 'e', multiple: true }, cwd: { type: 'string', short: 'w' },
        timeout: { type: 'string' }, wait: { type: 'string' }, socket: { type: 'string' }, help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (e) {
    throw new TypevisorError('INVALID_ARGUMENT', `${e instanceof Error ? e.message : String(e)} — see 'typevisor exec --help'`);
  }
  const v = parsed.values;
  if (v.help) {
    process.stdout.write(`${EXEC_USAGE}\n`);
    return 0;
  }
  const socket = v.socket;
  const name = socket === undefined ? parsed.positionals[0] : undefined;
  command.unshift(...parsed.positionals.slice(socket === undefined ? 1 : 0));
  if ((name === undefined && socket === undefined) || command.length === 0) throw new TypevisorError('INVALID_ARGUMENT', `exec needs a VM name (or --socket PATH) and a command — see 'typevisor exec --help'`);
  const seconds = (text: string | undefined, what: string, fallback: number): number => {
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!/^\d+(\.\d+)?$/.test(text) || !Number.isFinite(n)) throw new TypevisorError('INVALID_ARGUMENT', `${what} '${text}' is not a number of seconds`);
    return n;
  };
  const timeoutS = seconds(v.timeout, '--timeout', 0);
  const waitS = seconds(v.wait, '--wait', 300);
  const env: Record<string, string> = {};
  for (const kv of v.env ?? []) {
    const m = /^([^=]+)=(.*)$/s.exec(kv);
    if (!m) throw new TypevisorError('INVALID_ARGUMENT', `--env '${kv}' — write NAME=VALUE`);
    env[m[1]!] = m[2]!;
  }
  if (name !== undefined) requireVm(name);
  const agent = new GuestAgent(socket ?? vsockPath(name!));
  // A named VM that ends while we wait ends the wait; a bare socket is waited for as long as asked.
  if (waitS > 0) await agent.waitUntilReady(waitS * 1000, () => name === undefined || requireVm(name) !== undefined);
  const proc = await agent.spawn(command, { env, ...(v.cwd !== undefined ? { cwd: v.cwd } : {}), ...(v.interactive ? { stdin: process.stdin } : {}) });
  proc.stdout.pipe(process.stdout);
  proc.stderr.pipe(process.stderr);
  const forward = (signal: NodeJS.Signals): void => proc.kill(signal === 'SIGINT' ? 'SIGINT' : 'SIGTERM');
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  // The signal, then the connection: the agent kills the command's group when the host goes.
  if (timeoutS > 0) timer = setTimeout(() => { timedOut = true; proc.kill('SIGKILL'); proc.abort(); }, timeoutS * 1000);
  try {
    const status = await proc.wait().catch((e: unknown) => { if (timedOut) return undefined; throw e; });
    if (timedOut || !status) {
      process.stderr.write(`typevisor: the command did not finish within ${timeoutS} s and was killed\n`);
      return 124;
    }
    return status.exitCode;
  } finally {
    clearTimeout(timer);
    process.off('SIGINT', forward);
    process.off('SIGTERM', forward);
    if (v.interactive) process.stdin.destroy();
  }
}
