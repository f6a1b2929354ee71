// Benchmarks that touch the network run inside a namespace of their own: the script re-runs itself
// under `ip netns exec` with `--inside`, so its TAPs, bridges, servers and all traffic stay in
// there, and the namespace (with whatever still runs in it) is removed afterwards.
import { execFileSync, spawnSync } from 'node:child_process';

/** Runs `inner` when this is the re-run inside the namespace; otherwise makes one and re-runs `script` in it. */
export async function inNetworkNamespace(script: string, label: string, inner: () => Promise<void>): Promise<void> {
  if (process.argv.includes('--inside')) {
    await inner();
    return;
  }
  const ns = `tv-bench-${label}-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up']);
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, script, '--inside'], { stdio: 'inherit', env: process.env });
    process.exitCode = r.status ?? 1;
  } finally {
    for (const pid of execFileSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).split('\n').filter((l) => l.trim() !== '')) {
      try { process.kill(Number(pid), 'SIGKILL'); } catch { /* gone */ }
    }
    execFileSync('ip', ['netns', 'del', ns]);
  }
}
