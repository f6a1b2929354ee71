// Runs one of guest/'s build recipes (bash scripts): progress lines from its stderr go to `log`,
// its result is the last line of its stdout. The script runs in its own process group so that an
// interrupt of ours reaches every process of the build (bash runs its INT trap only after the
// foreground make, tar or debootstrap has ended) and the script can remove its partial files.
import { spawn } from 'node:child_process';
import { TypevisorError } from '../base/errors.js';

export interface BuildScript {
  /** What is being built, for messages ("the default guest"). */
  what: string;
  script: string;
  args?: readonly string[];
  env?: NodeJS.ProcessEnv;
  /** The script's own failure lines start with this ("guest build failed: …"). */
  failurePrefix: string;
}

export function runBuildScript(b: BuildScript, log: (line: string) => void): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [b.script, ...(b.args ?? [])], { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: b.env ?? process.env });
    let interrupted: NodeJS.Signals | undefined;
    const forwarders = (['SIGINT', 'SIGTERM', 'SIGHUP'] as const).map((signal) => {
      const forward = (): void => {
        interrupted = signal;
        try {
          if (child.pid !== undefined) process.kill(-child.pid, 'SIGINT');
        } catch {
          // The build has already ended.
        }
      };
      process.on(signal, forward);
      return () => process.off(signal, forward);
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
      for (const line of d.toString().split('\n')) if (line.trim() !== '') log(line);
    });
    child.on('error', (e) => reject(new TypevisorError('GUEST_BUILD_FAILED', `cannot run the build of ${b.what}: ${e.message}`, { cause: e })));
    child.on('close', (code) => {
      for (const remove of forwarders) remove();
      if (interrupted) {
        reject(new TypevisorError('GUEST_BUILD_FAILED', `building ${b.what} was interrupted (${interrupted}); its temporary files are removed and nothing was kept`));
        return;
      }
      const result = out.trim().split('\n').at(-1) ?? '';
      if (code !== 0 || result === '') {
        const why = err.trim().split('\n').filter((l) => l.startsWith(b.failurePrefix)).at(-1)?.slice(b.failurePrefix.length).trim() ?? `exit status ${code}`;
        reject(new TypevisorError('GUEST_BUILD_FAILED', `building ${b.what} failed: ${why}`));
        return;
      }
      resolve(result);
    });
  });
}
