// The TAP backend under virtio-net with real TAPs on a real bridge (inside a namespace that the
// datapath bench makes and removes): 64 KiB TSO frames and 1514-byte frames go from one device's
// transmit ring through TAP → bridge → TAP into the other device's mergeable receive buffers whole
// — which holds only if the offloads the driver accepted reached the TAPs (TUNSETOFFLOAD), since
// otherwise the kernel would cut the TSO frames up. The bench checks each frame byte for byte.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { accessSync, constants } from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const BENCH = fileURLToPath(new URL('../../bench/net-datapath.js', import.meta.url));

const skip = ((): string | false => {
  if (process.getuid?.() !== 0) return 'SKIPPED: TAPs, bridges and namespaces need root';
  try {
    accessSync('/dev/net/tun', constants.R_OK | constants.W_OK);
    return false;
  } catch {
    return 'SKIPPED: /dev/net/tun is not available on this host';
  }
})();
if (skip) console.warn(`\n*** ${skip} ***\n`);

test('TSO frames cross TAP → bridge → TAP whole, into mergeable buffers, byte-exact', { skip, timeout: 120_000 }, () => {
  const r = spawnSync(process.execPath, [BENCH], { env: { ...process.env, BENCH_MB: '20' }, encoding: 'utf8' });
  assert.equal(r.status, 0, `the datapath run failed:\n${r.stdout}\n${r.stderr}`);
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  assert.ok(line, 'it printed its RESULT line');
  const result = JSON.parse(line.slice('RESULT '.length)) as Record<string, number>;
  assert.equal(result['tso64k_frame_bytes'], 65470);
  assert.ok(result['tso64k_frames']! >= 300, `64 KiB frames arrived: ${result['tso64k_frames']}`);
  assert.ok(result['mtu1514_frames']! >= 13_000, `1514-byte frames arrived: ${result['mtu1514_frames']}`);
  assert.ok(!execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }).includes('tv-bench-netdp'), 'its namespace is gone');
});
