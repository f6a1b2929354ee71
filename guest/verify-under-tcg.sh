#!/usr/bin/env bash
# Checks the default guest without Typevisor: boots it under QEMU with software emulation (TCG)
# and runs the command protocol of guest/README.md end to end — markers, argv encoding, exit
# status, the interactive shell, and the reset/power-off that ends the VM.
# Usage: guest/verify-under-tcg.sh [GUEST_DIR]   (default: the directory build-default-guest.sh prints)
# Environment: MACHINE (QEMU machine, default pc), TIMEOUT (seconds per boot, default 120),
#              KEEP_LOGS=1 (keep the serial logs and print where).
# Why pc and not microvm: this kernel under TCG has no clock to calibrate the TSC against on
# microvm (no port 0x61 for PIT calibration, no HPET/PM timer, no kvmclock without KVM) and
# hangs; microvm also has no i8042, so reboot=k would never end it. pc's SeaBIOS costs ~1 s.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
die() { printf 'verify-under-tcg: %s\n' "$*" >&2; exit 2; }
command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 is missing — apt-get install qemu-system-x86"
if (($#)); then dir=$1; else dir=$("$here/build-default-guest.sh" | tail -1); fi
kernel=$dir/vmlinux
initrd=$dir/initramfs.cpio
[[ -f $kernel && -f $initrd ]] || die "no vmlinux and initramfs.cpio in $dir"
machine=${MACHINE:-pc}
limit=${TIMEOUT:-120}

logs=$(mktemp -d "${TMPDIR:-/tmp}/typevisor-tcg-XXXXXX")
if [[ ${KEEP_LOGS:-} == 1 ]]; then trap 'echo "serial logs in $logs" >&2' EXIT; else trap 'rm -rf "$logs"' EXIT; fi
failures=0
pass() { printf 'ok    %-28s %s\n' "$1" "$2"; }
fail() { printf 'FAIL  %-28s %s\n' "$1" "$2"; failures=$((failures + 1)); }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f s", b - a }'; }

# typevisor.cmd: the argv joined by NUL bytes, base64 (what src/guest/command-protocol.ts sends).
encode() { printf '%s\0' "$@" | head -c -1 | base64 -w0; }

# `quiet`: kernel messages share the console and could land inside the command's output
# (e.g. the TSC refinement a second after boot).
qemu() { # qemu LOG APPEND... (stdin is the serial input)
  local log=$1; shift
  timeout "$limit" qemu-system-x86_64 -accel tcg -M "$machine" -cpu max -m 256 -nodefaults -no-user-config \
    -nographic -serial stdio -kernel "$kernel" -initrd "$initrd" -no-reboot \
    -append "console=ttyS0 reboot=k panic=-1 quiet $*" > "$log" 2>&1
}

# What the guest printed between the markers, and the status in TYPEVISOR-EXIT.
# (SeaBIOS leaves "Booting from ROM.." without a newline, and `quiet` leaves nothing after it.)
output_of() { tr -d '\r' < "$1" | awk '/^TYPEVISOR-EXIT [0-9]+$/ { on = 0 } on { print } /TYPEVISOR-BEGIN$/ { on = 1 }'; }
status_of() { tr -d '\r' < "$1" | sed -n 's/^TYPEVISOR-EXIT \([0-9]*\)$/\1/p' | head -1; }

# check NAME STATUS EXPECTED-OUTPUT ARGV...: EXPECTED-OUTPUT is a whole-output match, or ~REGEX.
check() {
  local name=$1 want_status=$2 want_out=$3; shift 3
  local log="$logs/$name.log" t0 rc=0 got got_status
  t0=$(now)
  qemu "$log" "typevisor.cmd=$(encode "$@")" < /dev/null || rc=$?
  local took; took=$(secs "$t0" "$(now)")
  got=$(output_of "$log"); got_status=$(status_of "$log")
  if ((rc == 124)); then fail "$name" "no reset within ${limit}s (log: $log)"; return; fi
  if [[ $got_status != "$want_status" ]]; then fail "$name" "status '${got_status:-none}', wanted $want_status ($took)"; return; fi
  if [[ $want_out == "~"* ]]; then
    [[ $got =~ ${want_out#\~} ]] || { fail "$name" "output $(printf %q "$got") does not match ${want_out#\~}"; return; }
  elif [[ $got != "$want_out" ]]; then
    fail "$name" "output $(printf %q "$got"), wanted $(printf %q "$want_out")"; return
  fi
  pass "$name" "status $got_status, QEMU exited after $took"
}

echo "guest: $dir ($(stat -c %s "$kernel") byte vmlinux, $(stat -c %s "$initrd") byte initramfs); QEMU -M $machine -accel tcg"
check uname 0 "~^Linux typevisor 6\.1\.[0-9]+ .* x86_64 GNU/Linux$" uname -a
check exit-status 7 "" sh -c 'exit 7'
check argv-quoting 0 $'[a b]\n[it\'s "q"]\n[line1\nline2]\n[]\n[$HOME *]' \
  printf '[%s]\n' 'a b' "it's \"q\"" $'line1\nline2' '' '$HOME *'
check not-found 127 "~not found" no-such-command
check stdin-is-null 0 "" cat

# The syscall fix-up, exercised here where SYSCALL works: a probe jumps to entry_SYSCALL_64 from
# user mode, as a SYSCALL does on nested PVM KVM (kernel/syscall-fixup-probe.c). It goes into a
# second cpio archive appended to the initramfs (the kernel unpacks concatenated archives).
entry=$(nm "$kernel" 2>/dev/null | awk '$3 == "entry_SYSCALL_64" { print $1 }')
if [[ -z $entry ]] || ! command -v gcc >/dev/null; then
  echo "skip  syscall-fixup                (needs gcc and nm, and a vmlinux with symbols)"
else
  mkdir -p "$logs/probe/bin"
  gcc -Os -static -nostdlib -ffreestanding -fno-stack-protector -o "$logs/probe/bin/syscall-fixup-probe" \
    "$here/kernel/syscall-fixup-probe.c"
  (cd "$logs/probe" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) | cat "$initrd" - > "$logs/probe.cpio"
  plain_initrd=$initrd initrd="$logs/probe.cpio"
  check syscall-fixup 0 $'write through the fix-up\nSYSCALL-FIXUP-OK' syscall-fixup-probe "$entry"
  initrd=$plain_initrd
fi

# Interactive: no typevisor.cmd → TYPEVISOR-READY and a shell on the console; when it exits,
# /init powers the machine off. The input goes in once the marker is out.
name=interactive
log="$logs/$name.log"
fifo="$logs/serial-in"
mkfifo "$fifo"
t0=$(now)
qemu "$log" < "$fifo" & pid=$!
exec 8> "$fifo"
for _ in $(seq $((limit * 10))); do grep -q TYPEVISOR-READY "$log" 2>/dev/null && break; kill -0 $pid 2>/dev/null || break; sleep 0.1; done
printf 'echo "answer=$((6 * 7))"\nexit\n' >&8
rc=0; wait $pid || rc=$?
exec 8>&-
took=$(secs "$t0" "$(now)")
if ((rc == 124)); then fail "$name" "did not power off within ${limit}s (log: $log)"
elif ! tr -d '\r' < "$log" | grep -qx 'answer=42'; then fail "$name" "the shell did not answer (log: $log)"
else pass "$name" "READY, shell ran, powered off after $took"
fi

if ((failures)); then echo "$failures check(s) failed"; KEEP_LOGS=1; trap 'echo "serial logs in $logs" >&2' EXIT; exit 1; fi
echo "all checks passed"
