#!/usr/bin/env bash
# System packages the test suite uses (real components, not mocks). Installs only what is missing;
# needs root (CI runs as root). Without root it says what is missing and carries on: the tests that
# need a missing program skip with that reason, except under CI=true where they fail.
set -euo pipefail
need=()
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: not root; missing Debian packages: ${need[*]}" >&2
  exit 0
fi
echo "system-deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
