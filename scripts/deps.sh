#!/usr/bin/env bash
# Installs, when missing, what `make test` needs on Debian 12: the BPF toolchain
# (make check-generated), the lab's tools, Chromium for the HTML report's
# browser test and a Prometheus server for the fleet test. Idempotent: does
# nothing (and needs no network) when everything is present. Needs root to install.
set -euo pipefail

# command-or-file -> Debian package
declare -A need=(
	[clang]=clang [llc]=llvm [/usr/include/bpf/bpf_helpers.h]=libbpf-dev [bpftool]=bpftool
	[ethtool]=ethtool [tcpdump]=tcpdump [ip]=iproute2 [tc]=iproute2 [nsenter]=util-linux
	[setpriv]=util-linux [systemd-analyze]=systemd [chromium]=chromium [prometheus]=prometheus
	[git]=git [make]=make
)
missing=()
for what in "${!need[@]}"; do
	if [[ $what == /* ]]; then
		[[ -e $what ]] && continue
	elif command -v "$what" >/dev/null 2>&1; then
		continue
	fi
	missing+=("${need[$what]}")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [[ $(id -u) -ne 0 ]]; then
	echo "missing for the tests: run  sudo apt-get install -y $pkgs" >&2
	exit 1
fi
echo "installing what the tests need: $pkgs" >&2
export DEBIAN_FRONTEND=noninteractive
# Packages with a service (prometheus) must not start it: the tests run
# their own instances on loopback.
policy=/usr/sbin/policy-rc.d
created_policy=
if [[ ! -e $policy ]]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && created_policy=1
fi
trap '[[ -n $created_policy ]] && rm -f "$policy"' EXIT
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
