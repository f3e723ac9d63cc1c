#!/usr/bin/env bash
# Install the Debian packages partybal needs, when they are missing. Idempotent.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
want=()
for list in "$here/apt-packages.txt" "$here/apt-packages-dev.txt"; do
  while read -r pkg; do
    [[ -z "$pkg" || "$pkg" == \#* ]] && continue
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || want+=("$pkg")
  done < "$list"
done
if ((${#want[@]})); then
  if [[ $(id -u) -ne 0 ]] && ! command -v sudo >/dev/null; then
    echo "partybal: missing Debian packages: ${want[*]}" >&2
    echo "partybal: install them as root: apt-get install ${want[*]}" >&2
    exit 1
  fi
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  echo "partybal: installing ${want[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null \
    || { echo "partybal: apt-get install failed for: ${want[*]}" >&2; exit 1; }
fi
for cmd in Rscript pandoc; do
  command -v "$cmd" >/dev/null || { echo "partybal: $cmd is still missing after install" >&2; exit 1; }
done
