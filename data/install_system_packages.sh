#!/usr/bin/env bash
# Make apt usable for the offline assets, then install the Debian packages listed in $1 that are
# missing (one name per line, # comments). Needs root or sudo on Debian/Ubuntu.
#  - apt's package lists must exist: `apt-get download` (used by hyena_lite.assets) reads them;
#  - listed packages already installed are left alone, so a second run changes nothing.
set -euo pipefail
list="$1"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
if ! compgen -G "/var/lib/apt/lists/*_Packages*" >/dev/null; then
  echo "apt has no package lists: apt-get update"
  $SUDO apt-get update -qq
fi
mapfile -t wanted < <(grep -vE '^\s*(#|$)' "$list")
missing=()
for pkg in "${wanted[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages present: ${wanted[*]:-none}"
  exit 0
fi
echo "installing Debian packages: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
