#!/usr/bin/env bash
# Builds Typevisor's default guest from Debian packages: a kernel from linux-source with our config
# and patch (uncompressed vmlinux, PVH entry) and a busybox initramfs with our /init. Idempotent:
# the result is cached under ${XDG_CACHE_HOME:-~/.cache}/typevisor/guest/<version>/, where the
# version is a hash of this recipe; an interrupted build leaves nothing that looks complete.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/typevisor/guest"
recipe_hash=$(cat "$here/build-default-guest.sh" "$here/kernel/config-fragment" "$here/kernel/pvm-syscall-fixup.patch" "$here/init" | sha256sum | cut -c1-12)
out="$cache/$recipe_hash"
start=$(date +%s)
step() { printf '[%4ds] %s\n' $(($(date +%s) - start)) "$*" >&2; }
die() { printf 'guest build failed: %s\n' "$*" >&2; exit 1; }

if [[ -f $out/manifest.json && -f $out/vmlinux && -f $out/initramfs.cpio ]]; then
  echo "$out"
  exit 0
fi

packages=(linux-source-6.1 build-essential bc flex bison libelf-dev cpio busybox-static xz-utils)
missing=()
for p in "${packages[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || die "needs Debian packages ${missing[*]} — install them (sudo apt-get install ${missing[*]}) or run as root"
  step "installing Debian build dependencies: ${missing[*]}"
  apt-get update -qq >&2 || die "apt-get update failed — check the network and /etc/apt/sources.list"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2 || die "apt-get install ${missing[*]} failed"
fi
src_tar=$(ls /usr/src/linux-source-6.1.tar.* 2>/dev/null | head -1)
[[ -n $src_tar ]] || die "linux-source-6.1 is installed but /usr/src/linux-source-6.1.tar.* is missing"

mkdir -p "$cache"
work=$(mktemp -d "$cache/.build-$recipe_hash-XXXXXX")
cleanup() { rm -rf "$work"; }
trap cleanup EXIT
trap 'step "interrupted"; exit 130' INT TERM

step "unpacking $(basename "$src_tar")"
tar -C "$work" -xf "$src_tar"
ksrc="$work/linux-source-6.1"
step "applying pvm-syscall-fixup.patch"
patch -s -d "$ksrc" -p1 < "$here/kernel/pvm-syscall-fixup.patch"

step "configuring (tinyconfig + config-fragment)"
make -s -C "$ksrc" tinyconfig >/dev/null
"$ksrc/scripts/kconfig/merge_config.sh" -m -O "$ksrc" "$ksrc/.config" "$here/kernel/config-fragment" >/dev/null
make -s -C "$ksrc" olddefconfig >/dev/null
dropped=()
while IFS= read -r line; do
  [[ $line =~ ^(CONFIG_[A-Z0-9_]+)=(.*)$ ]] || continue
  grep -qx "${BASH_REMATCH[1]}=${BASH_REMATCH[2]}" "$ksrc/.config" || dropped+=("${BASH_REMATCH[1]}")
done < "$here/kernel/config-fragment"
((${#dropped[@]})) && step "warning: options that did not stick: ${dropped[*]}"

jobs=$(nproc)
step "building vmlinux with make -j$jobs (a few minutes)"
make -s -C "$ksrc" -j"$jobs" vmlinux KBUILD_BUILD_HOST=typevisor KBUILD_BUILD_USER=typevisor >"$work/make.log" 2>&1 \
  || { tail -30 "$work/make.log" >&2; die "kernel build failed (log above)"; }
kver=$(make -s -C "$ksrc" kernelrelease)

step "building the initramfs (busybox $(busybox | head -1 | awk '{print $2}'))"
root="$work/initramfs"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,root,etc}
cp /bin/busybox "$root/bin/busybox"
for applet in $(/bin/busybox --list); do
  [[ $applet == busybox ]] || ln -sf busybox "$root/bin/$applet"
done
install -m 0755 "$here/init" "$root/init"
echo "root:x:0:0:root:/root:/bin/sh" > "$root/etc/passwd"
echo "root:x:0:" > "$root/etc/group"
# Uncompressed: the guest's decompressor would run in KVM's emulator on PVM hosts.
(cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) > "$work/initramfs.cpio"

step "verifying"
mkdir -p "$work/out"
cp "$ksrc/vmlinux" "$work/out/vmlinux"
strip --strip-debug "$work/out/vmlinux" 2>/dev/null || true
mv "$work/initramfs.cpio" "$work/out/initramfs.cpio"
readelf -n "$work/out/vmlinux" | grep -q 'Xen' || die "the vmlinux has no PVH entry note (CONFIG_PVH)"
cpio -it --quiet < "$work/out/initramfs.cpio" | grep -qx init || die "the initramfs has no /init"
cp "$ksrc/.config" "$work/out/kernel.config"
cat > "$work/out/manifest.json" <<JSON
{
  "recipe": "$recipe_hash",
  "kernel": "$kver",
  "busybox": "$(busybox | head -1 | awk '{print $2}')",
  "vmlinux_sha256": "$(sha256sum "$work/out/vmlinux" | cut -d' ' -f1)",
  "initramfs_sha256": "$(sha256sum "$work/out/initramfs.cpio" | cut -d' ' -f1)",
  "built": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "build_seconds": $(($(date +%s) - start))
}
JSON
rm -rf "$out"
mv "$work/out" "$out"
step "done: $out"
echo "$out"
