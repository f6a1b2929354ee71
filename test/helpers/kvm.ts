// Gate for tests that need /dev/kvm: they run wherever it exists and say loudly when skipped.
import { accessSync, constants } from 'node:fs';

export const hasKvm = ((): boolean => {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
})();

/** `skip` option for node:test: false where KVM exists, else a loud reason. */
export const kvmSkip: string | false = hasKvm
  ? false
  : 'SKIPPED: /dev/kvm is not available on this host — these tests need real KVM';

if (!hasKvm) console.warn(`\n*** ${kvmSkip} ***\n`);
