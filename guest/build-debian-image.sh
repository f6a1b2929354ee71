#!/usr/bin/env bash
# Builds an ext4 image holding a minimal Debian 12 root filesystem (`typevisor image create NAME
# --size SIZE --from debian`): debootstrap's minbase plus systemd, udev and a serial getty, and
# Typevisor's command unit (guest/debian/); each image also gets the guest agent (built here from
# guest/agent/, with musl-gcc where it is installed, else gcc -static). The Debian tree is built once and cached under
# ${XDG_CACHE_HOME:-~/.cache}/typevisor/debian/<version>/ (version: a hash of this recipe); each image
# is made from it by mkfs.ext4 -d — no loop device, no mount. Progress goes to stderr; the image's
# path is the last line on stdout. An interrupted or failed run leaves no image and no tree that
# looks complete.
# Usage: build-debian-image.sh OUTPUT SIZE_BYTES
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian), TYPEVISOR_DEBOOTSTRAP (the
# debootstrap program, default debootstrap).
set -euo pipefail

out_img=$1
size=$2
here=$(cd "$(dirname "$0")" && pwd)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/typevisor/debian"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
debootstrap=${TYPEVISOR_DEBOOTSTRAP:-debootstrap}
suite=bookworm
packages=systemd,systemd-sysv,udev,e2fsprogs,procps,iproute2
start=$(date +%s)
step() { printf '[%4ds] %s\n' $(($(date +%s) - start)) "$*" >&2; }
die() { printf 'image build failed: %s\n' "$*" >&2; exit 1; }

[[ ! -e $out_img ]] || die "$out_img already exists — remove it or choose another name"
command -v mkfs.ext4 >/dev/null || PATH=$PATH:/usr/sbin:/sbin
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 is missing — run: apt-get install e2fsprogs"

recipe=$(mktemp -d "${TMPDIR:-/tmp}/typevisor-debian-recipe-XXXXXX")
tmp_img="$out_img.partial-$$"
work=
cleanup() { rm -rf "$recipe" "$tmp_img"; [[ -z $work ]] || rm -rf "$work"; }
trap cleanup EXIT
trap 'step "interrupted; removing temporary files"; exit 130' INT
trap 'step "terminated; removing temporary files"; exit 143' TERM
cp "$here/debian/"* "$recipe/"
version=$( (cat "$here/build-debian-image.sh"; echo "$suite $packages"; cd "$recipe" && cat $(ls | LC_ALL=C sort)) | sha256sum | cut -c1-12)
tree="$cache/$version/root"

if [[ ! -f $cache/$version/complete ]]; then
  command -v "$debootstrap" >/dev/null || PATH=$PATH:/usr/sbin:/sbin
  command -v "$debootstrap" >/dev/null || die "debootstrap is not installed — run: apt-get install debootstrap"
  [[ $(id -u) -eq 0 ]] || die "building the Debian tree needs root (debootstrap chroots and sets file owners) — run as root once; later images reuse the cached tree"
  mkdir -p "$cache"
  exec 9>"$cache/.lock-$version"
  if ! flock -n 9; then
    step "another build of the Debian tree $version is running; waiting for it"
    flock 9
  fi
fi
if [[ ! -f $cache/$version/complete ]]; then
  work=$(mktemp -d "$cache/.build-$version-XXXXXX")
  root="$work/root"
  step "debootstrap $suite (minbase + $packages) from $mirror"
  "$debootstrap" --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >&2 \
    || die "debootstrap failed (see above) — check the network and the mirror $mirror"
  step "configuring: hostname, fstab, serial console, Typevisor's command unit"
  echo typevisor > "$root/etc/hostname"
  printf '127.0.0.1 localhost\n127.0.1.1 typevisor\n' > "$root/etc/hosts"
  printf '# <device> <mount point> <type> <options> <dump> <pass>\n/dev/vda / ext4 errors=remount-ro 0 1\n' > "$root/etc/fstab"
  install -D -m 0755 "$recipe/typevisor-command" "$root/usr/local/lib/typevisor/command"
  install -D -m 0644 "$recipe/typevisor-command.service" "$root/etc/systemd/system/typevisor-command.service"
  install -D -m 0644 "$recipe/autologin.conf" "$root/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf"
  mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
  ln -sf /etc/systemd/system/typevisor-command.service "$root/etc/systemd/system/multi-user.target.wants/typevisor-command.service"
  # No virtual terminals in a Typevisor VM: the console is ttyS0.
  ln -sf /dev/null "$root/etc/systemd/system/getty@tty1.service"
  # A VM boots faster without what it has no use for. On PVM hosts every exec and page fault of
  # the guest kernel is emulated, so each generator (a process that maps libsystemd-shared) costs
  # seconds: keep the fstab and getty generators, mask those for hardware and set-ups a VM's root
  # image does not have (encrypted/verity/integrity volumes, GPT auto-mounts, hibernation,
  # rc.local, SysV scripts, systemd.run=), and e2scrub_reap (it looks for LVM snapshots; there is no LVM).
  mkdir -p "$root/etc/systemd/system-generators"
  for g in systemd-cryptsetup-generator systemd-gpt-auto-generator systemd-hibernate-resume-generator \
    systemd-integritysetup-generator systemd-veritysetup-generator systemd-rc-local-generator systemd-run-generator \
    systemd-sysv-generator systemd-system-update-generator; do
    ln -sf /dev/null "$root/etc/systemd/system-generators/$g"
  done
  ln -sf /dev/null "$root/etc/systemd/system/e2scrub_reap.service"
  # The default guest's kernel has no modules: nothing for modprobe@ and modules-load to load.
  ln -sf /dev/null "$root/etc/systemd/system/modprobe@.service"
  ln -sf /dev/null "$root/etc/systemd/system/systemd-modules-load.service"
  # Debian raises kernel.pid_max to 4194304; the default guest's kernel (CONFIG_BASE_SMALL) allows
  # at most 32768, and systemd-sysctl would fail the boot's "degraded" check over it.
  ln -sf /dev/null "$root/etc/sysctl.d/50-pid-max.conf"
  # Coldplug only the device classes a VM's units wait for (consoles, disks, NICs, input), not
  # every kernel object: each event is a udev worker running rules.
  install -D -m 0644 "$recipe/udev-trigger.conf" "$root/etc/systemd/system/systemd-udev-trigger.service.d/typevisor.conf"
  chroot "$root" passwd -d root >/dev/null
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  rm -f "$root/etc/machine-id" && touch "$root/etc/machine-id"
  echo "debian $suite $(cat "$root/etc/debian_version") ($packages)" > "$work/description"
  mkdir -p "$cache/$version"
  rm -rf "$tree"
  mv "$root" "$tree"
  mv "$work/description" "$cache/$version/description"
  touch "$cache/$version/complete"
  rm -rf "$work"
  work=
fi

need=$(du -s --block-size=1 "$tree" | cut -f1)
# ext4's own metadata (inode tables, journal) on top of the files.
((size >= need + need / 4 + 64 * 1024 * 1024)) \
  || die "--size $size is too small: the Debian tree alone is $((need / 1048576)) MiB — give at least $(((need + need / 4) / 1048576 + 64))M (e.g. --size 2G)"
step "making a $((size / 1048576)) MiB ext4 image from $(cat "$cache/$version/description")"
truncate -s "$size" "$tmp_img"
mkfs.ext4 -q -F -L typevisor-root -d "$tree" "$tmp_img" >&2 || die "mkfs.ext4 -d failed (see above)"
# Each image is its own machine (D-Bus, DHCP client ids and journald key off this id): a fresh
# machine-id, written into the new file system without mounting it.
id_file="$recipe/machine-id"
od -An -N16 -tx1 /dev/urandom | tr -d ' \n' > "$id_file"
echo >> "$id_file"
debugfs -w -R "rm /etc/machine-id" "$tmp_img" >/dev/null 2>&1
debugfs -w -R "write $id_file /etc/machine-id" "$tmp_img" >/dev/null 2>&1 || die "cannot write /etc/machine-id into the image (debugfs)"
[[ $(debugfs -R "cat /etc/machine-id" "$tmp_img" 2>/dev/null) == "$(cat "$id_file")" ]] || die "/etc/machine-id did not reach the image"
# The guest agent (guest/agent/): written into each new file system like the machine-id, enabled
# for multi-user.target — not into the cached tree, so a new agent needs no new debootstrap.
agent_unit="$here/agent/typevisor-agent.service"
agent="$recipe/.typevisor-agent"
if command -v musl-gcc >/dev/null; then cc=(musl-gcc -static -Os -s); else cc=(gcc -static -Os -s); fi
"${cc[@]}" -o "$agent" "$here/agent/typevisor-agent.c" >&2 || die "cannot build the guest agent with ${cc[0]} — apt-get install musl-tools (or gcc)"
chmod 0755 "$agent"
for cmd in "write $agent /usr/local/sbin/typevisor-agent" "write $agent_unit /etc/systemd/system/typevisor-agent.service" \
  "symlink /etc/systemd/system/multi-user.target.wants/typevisor-agent.service /etc/systemd/system/typevisor-agent.service"; do
  debugfs -w -R "$cmd" "$tmp_img" >/dev/null 2>&1 || die "cannot add the guest agent to the image (debugfs: $cmd)"
done
# debugfs exits 0 whatever its command did: look.
[[ $(debugfs -R "stat /usr/local/sbin/typevisor-agent" "$tmp_img" 2>/dev/null | grep -o 'Mode: *[0-7]*') =~ 0755 ]] || die "the guest agent did not reach the image executable"
for f in /etc/systemd/system/typevisor-agent.service /etc/systemd/system/multi-user.target.wants/typevisor-agent.service; do
  debugfs -R "stat $f" "$tmp_img" 2>/dev/null | grep -q '^Inode:' || die "$f did not reach the image"
done
mv -n "$tmp_img" "$out_img"
[[ ! -e $tmp_img ]] || die "$out_img appeared while the image was being made; the new image is not kept"
step "done: $out_img"
echo "$out_img"
