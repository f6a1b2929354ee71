// Test helper for parsers of untrusted input: they either succeed or fail with one TypevisorError code.
import assert from 'node:assert/strict';
import { TypevisorError, type ErrorCode } from '../../src/base/errors.js';

/** Runs `parse`; any exception must be a TypevisorError with `code` (never a crash of another kind). */
export function assertParsesOrFailsWith(code: ErrorCode, parse: () => unknown): void {
  try {
    parse();
  } catch (e) {
    assert.ok(e instanceof TypevisorError && e.code === code, String(e));
  }
}
