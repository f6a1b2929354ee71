#!/usr/bin/env bash
# Builds the default guest's kernel from Debian's linux-source-6.1 with our config fragment and
# patch: an uncompressed vmlinux with a PVH entry (guest/README.md). Cached under
# ${XDG_CACHE_HOME:-~/.cache}/typevisor/kernel/<version>/, where the version is a hash of this
# script, kernel/config-fragment and kernel/pvm-syscall-fixup.patch — so a change to /init or the
# agent does not rebuild Linux. Idempotent; an interrupted build leaves nothing that looks complete.
# Prints progress on stderr and, on success, the result's directory on stdout (its last line).
# Environment: JOBS (make -j, default nproc).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=build-lib.sh
source "$here/build-lib.sh"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/typevisor/kernel"
recipe=$(mktemp -d "${TMPDIR:-/tmp}/typevisor-kernel-recipe-XXXXXX")
trap 'rm -rf "$recipe"' EXIT
cp "$here/kernel/config-fragment" "$here/kernel/pvm-syscall-fixup.patch" "$recipe/"
version=$(cat "$here/build-kernel.sh" "$here/build-lib.sh" "$recipe/config-fragment" "$recipe/pvm-syscall-fixup.patch" | sha256sum | cut -c1-12)
out="$cache/$version"
start=$(date +%s)
step() { printf '[%4ds] kernel: %s\n' $(($(date +%s) - start)) "$*" >&2; }
die() { printf 'guest build failed: %s\n' "$*" >&2; exit 1; }

if verified "$out"; then echo "$out"; exit 0; fi

# Debian packages the kernel build needs.
need_packages linux-source-6.1 build-essential bc flex bison libelf-dev xz-utils
src_tar=$(ls /usr/src/linux-source-6.1.tar.* 2>/dev/null | head -1 || true)
[[ -n $src_tar ]] || die "linux-source-6.1 is installed but /usr/src/linux-source-6.1.tar.* is missing"

begin_build "$cache" "$version" "$out"

step "unpacking $(basename "$src_tar") ($(dpkg-query -W -f '${Version}' linux-source-6.1))"
tar -C "$work" -xf "$src_tar"
ksrc="$work/linux-source-6.1"
step "applying pvm-syscall-fixup.patch"
patch -s -d "$ksrc" -p1 < "$recipe/pvm-syscall-fixup.patch" || die "kernel/pvm-syscall-fixup.patch does not apply to this linux-source"

step "configuring: make tinyconfig + kernel/config-fragment"
make -s -C "$ksrc" tinyconfig >/dev/null
"$ksrc/scripts/kconfig/merge_config.sh" -m -O "$ksrc" "$ksrc/.config" "$recipe/config-fragment" >/dev/null
make -s -C "$ksrc" olddefconfig >/dev/null
# tinyconfig silently drops options whose dependencies are missing: check every line of the fragment.
not_applied=()
while IFS= read -r line; do
  if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
    grep -qxF "$line" "$ksrc/.config" || not_applied+=("$line")
  elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
    ! grep -q "^${BASH_REMATCH[1]}=" "$ksrc/.config" || not_applied+=("${BASH_REMATCH[1]}=n")
  fi
done < "$recipe/config-fragment"
if ((${#not_applied[@]})); then
  step "warning: config options that did not stick: ${not_applied[*]}"
else
  step "all $(grep -cE '^(CONFIG_|# CONFIG_.* is not set)' "$recipe/config-fragment") config-fragment lines applied"
fi

jobs=${JOBS:-$(nproc)}
step "building vmlinux with make -j$jobs (5-7 minutes on 2 cores)"
kstart=$(date +%s)
make -s -C "$ksrc" -j"$jobs" vmlinux KBUILD_BUILD_HOST=typevisor KBUILD_BUILD_USER=typevisor >"$work/build.log" 2>&1 \
  || { tail -30 "$work/build.log" >&2; die "kernel build failed (log above)"; }
kernel_seconds=$(($(date +%s) - kstart))
kver=$(make -s -C "$ksrc" kernelrelease)

res="$work/out"
mkdir -p "$res"
cp "$ksrc/vmlinux" "$res/vmlinux"
cp "$ksrc/.config" "$res/kernel.config"
cp "$work/build.log" "$res/build.log"
[[ $(od -An -tx1 -N4 "$res/vmlinux" | tr -d ' ') == 7f454c46 ]] || die "vmlinux is not an ELF file"
readelf -n "$res/vmlinux" | grep -A1 '^ *Xen' | grep -q '0x00000012' || die "vmlinux has no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY; CONFIG_PVH)"
json_list() { local s="" x; for x in "$@"; do s+="${s:+, }\"$x\""; done; printf '[%s]' "$s"; }
cat > "$res/manifest.json" <<JSON
{
  "version": "$version",
  "release": "$kver",
  "source_package": "linux-source-6.1 $(dpkg-query -W -f '${Version}' linux-source-6.1)",
  "config_not_applied": $(json_list "${not_applied[@]}"),
  "vmlinux": { "size": $(stat -c %s "$res/vmlinux"), "sha256": "$(sha256sum "$res/vmlinux" | cut -d' ' -f1)" },
  "built": "$(date -u +%Y-%m-%dT%H:%M:%SZ)",
  "build_seconds": $kernel_seconds
}
JSON
(cd "$res" && sha256sum vmlinux kernel.config manifest.json > SHA256SUMS)
rm -rf "$out"
mv "$res" "$out"
step "done: vmlinux $(($(stat -c %s "$out/vmlinux") / 1024)) KiB, $kver, in $kernel_seconds s"
echo "$out"
