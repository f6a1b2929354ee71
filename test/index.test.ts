// The package's entry point: `import { Vm } from 'typevisor'` resolves (through package.json's
// "exports", as a dependent's import would) and offers the library API.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

test("import { Vm } from 'typevisor' resolves to the library", () => {
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const out = execFileSync(process.execPath, ['--input-type=module', '-e',
    "const t = await import('typevisor'); console.log(Object.keys(t).sort().join(','), typeof t.Vm.create)"], { cwd: root, encoding: 'utf8' });
  assert.equal(out.trim(), 'GUEST_NAMES,GuestAgent,GuestProcess,TypevisorError,Vm,createImage,encodeCommand,ensureDefaultGuest,guestAssets function');
});
