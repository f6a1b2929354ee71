# Shared by the guest recipes (sourced, bash): checking results, installing the Debian packages a
# recipe needs, and taking the per-version lock and a work directory. The caller defines step()
# and die(), and $recipe (a temporary snapshot of its inputs, removed on exit).

# A result counts only if every file it lists is there with the recorded checksum.
verified() { [[ -f $1/SHA256SUMS && -f $1/manifest.json ]] && (cd "$1" && sha256sum --quiet --strict -c SHA256SUMS >/dev/null 2>&1); }

# need_packages PKG...: installs (as root, with apt-get) those not installed yet.
need_packages() {
  local missing=() p candidate
  for p in "$@"; do
    [[ $(dpkg-query -W -f '${Status}' "$p" 2>/dev/null) == "install ok installed" ]] || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  command -v apt-get >/dev/null || die "needs the Debian packages ${missing[*]}, and this host has no apt-get"
  [[ $(id -u) -eq 0 ]] || die "needs the Debian packages ${missing[*]} — run: sudo apt-get install ${missing[*]}"
  step "installing Debian packages: ${missing[*]}"
  apt-get update -qq >&2 || die "apt-get update failed — check the network and /etc/apt/sources.list"
  for p in "${missing[@]}"; do
    candidate=$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')
    [[ -n $candidate && $candidate != "(none)" ]] || die "Debian package $p is not available from the configured apt sources (this recipe needs Debian 12 bookworm's archive)"
  done
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2 \
    || die "apt-get install ${missing[*]} failed"
}

# begin_build CACHE VERSION OUT: one build per version at a time (a second caller waits, then finds
# the result and prints it); sets $work, a fresh directory in CACHE removed on exit or interrupt.
begin_build() {
  mkdir -p "$1"
  exec 9>"$1/.lock-$2"
  if ! flock -n 9; then
    step "another build of $2 is running; waiting for it"
    flock 9
  fi
  if verified "$3"; then echo "$3"; exit 0; fi
  work=$(mktemp -d "$1/.build-$2-XXXXXX")
  trap 'rm -rf "$work" "$recipe"' EXIT
  trap 'step "interrupted; removing $work"; exit 130' INT
  trap 'step "terminated; removing $work"; exit 143' TERM
}
