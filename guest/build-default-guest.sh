#!/usr/bin/env bash
# Builds Typevisor's default guest from Debian packages: the kernel (build-kernel.sh, cached on its
# own) and a busybox initramfs with our /init and the guest agent (agent/typevisor-agent.c, static,
# built with musl-gcc) — guest/README.md. Idempotent: the result is cached under
# ${XDG_CACHE_HOME:-~/.cache}/typevisor/guest/<version>/, where the version is a hash of this recipe,
# the kernel's version, /init and the agent's source; an interrupted build leaves nothing that
# looks complete. Prints progress on stderr and, on success, the result's directory on stdout (its
# last line). Environment: JOBS (make -j for the kernel, default nproc).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=build-lib.sh
source "$here/build-lib.sh"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/typevisor/guest"
die() { printf 'guest build failed: %s\n' "$*" >&2; exit 1; }

# The kernel first: its directory name is its version.
kdir=$("$here/build-kernel.sh" | tail -1) || die "the kernel build failed"
[[ -f $kdir/vmlinux ]] || die "the kernel build printed no result"
kversion=$(basename "$kdir")

# Build from a snapshot of the recipe, so that the version names exactly what was built.
recipe=$(mktemp -d "${TMPDIR:-/tmp}/typevisor-recipe-XXXXXX")
trap 'rm -rf "$recipe"' EXIT
cp "$here/init" "$here/agent/typevisor-agent.c" "$recipe/"
version=$( { cat "$here/build-default-guest.sh" "$here/build-lib.sh" "$recipe/init" "$recipe/typevisor-agent.c"; echo "kernel $kversion"; } | sha256sum | cut -c1-12)
out="$cache/$version"
start=$(date +%s)
step() { printf '[%4ds] %s\n' $(($(date +%s) - start)) "$*" >&2; }

if verified "$out"; then echo "$out"; exit 0; fi

need_packages cpio busybox-static musl-tools

begin_build "$cache" "$version" "$out"

step "building the guest agent (musl-gcc -static)"
musl-gcc -static -Os -s -Wall -Wextra -Werror -o "$work/typevisor-agent" "$recipe/typevisor-agent.c" 2>&1 >&2 \
  || die "the guest agent does not compile (guest/agent/typevisor-agent.c)"

# awk reads to the end: `busybox | head -1` can die of SIGPIPE under pipefail.
bbver=$(/bin/busybox 2>&1 | awk 'NR == 1 { print $2 }')
step "building the initramfs (busybox $bbver)"
root="$work/initramfs"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,root,etc}
cp /bin/busybox "$root/bin/busybox"
# Every applet as a symlink in /bin (what `busybox --install -s /bin` does inside the image).
for applet in $(/bin/busybox --list); do
  [[ $applet == busybox ]] || ln -s busybox "$root/bin/$applet"
done
install -m 0755 "$work/typevisor-agent" "$root/bin/typevisor-agent"
install -m 0755 "$recipe/init" "$root/init"
echo "root:x:0:0:root:/root:/bin/sh" > "$root/etc/passwd"
echo "root:x:0:" > "$root/etc/group"
# Name servers from the kernel's DHCP (ip=dhcp) appear in /proc/net/pnp, in resolv.conf's format.
ln -s /proc/net/pnp "$root/etc/resolv.conf"
# /dev/console comes from the kernel's built-in initramfs, unpacked before this one.
# Uncompressed: on PVM hosts the guest's inflate would run in KVM's instruction emulator.
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) > "$work/initramfs.cpio"

step "verifying"
res="$work/out"
mkdir -p "$res"
# A hard link where the caches share a file system (no second copy of 17 MB), a copy otherwise.
ln "$kdir/vmlinux" "$res/vmlinux" 2>/dev/null || cp "$kdir/vmlinux" "$res/vmlinux"
mv "$work/initramfs.cpio" "$res/initramfs.cpio"
cp "$kdir/kernel.config" "$res/kernel.config"
cpio -it --quiet < "$res/initramfs.cpio" | grep -qx init || die "the initramfs has no /init"
cpio -it --quiet < "$res/initramfs.cpio" | grep -qx bin/typevisor-agent || die "the initramfs has no agent"
size() { stat -c %s "$1"; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
cat > "$res/manifest.json" <<JSON
{
  "version": "$version",
  "kernel": $(cat "$kdir/manifest.json"),
  "busybox": { "version": "$bbver", "package": "busybox-static $(dpkg-query -W -f '${Version}' busybox-static)" },
  "agent": { "size": $(size "$work/typevisor-agent"), "compiler": "musl-gcc $(dpkg-query -W -f '${Version}' musl-tools)" },
  "files": {
    "vmlinux": { "size": $(size "$res/vmlinux"), "sha256": "$(sha "$res/vmlinux")" },
    "initramfs.cpio": { "size": $(size "$res/initramfs.cpio"), "sha256": "$(sha "$res/initramfs.cpio")" }
  },
  "built": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "build_seconds": $(($(date +%s) - start))
}
JSON
(cd "$res" && sha256sum vmlinux initramfs.cpio kernel.config manifest.json > SHA256SUMS)

# Publish atomically: the directory appears complete or not at all.
rm -rf "$out"
mv "$res" "$out"
step "done: initramfs.cpio $(($(size "$out/initramfs.cpio") / 1024)) KiB with the agent; kernel $kversion"
echo "$out"
