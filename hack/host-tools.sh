#!/usr/bin/env bash
# The PVC stage runs the real rsync and OpenSSH client (tests, demo, the pull
# Jobs). Install them from Debian when they are missing; elsewhere, say what
# is needed.
set -euo pipefail
missing=()
command -v rsync >/dev/null || missing+=(rsync)
command -v ssh >/dev/null || missing+=(openssh-client)
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "host-tools: install ${missing[*]} (the PVC stage runs rsync over ssh)" >&2
  exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo=sudo
echo "host-tools: installing ${missing[*]} from Debian"
$sudo apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
