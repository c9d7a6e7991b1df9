#!/usr/bin/env bash
# System packages the tests that use real parts need (Debian): the kernel's TCP over
# TUN in network namespaces (iproute2, netem from iproute2's tc), pcap checks (tshark),
# state diagrams (graphviz), the HTML report in a headless browser (chromium and
# chromium-driver, with a CJK font for the seed's Chinese quotes), and real HTTP clients
# for interop (curl, ab, wrk), and the tools the README uses by hand (nc, ping).
# Idempotent: installs only what is missing. Needs root (every machine here is).
set -euo pipefail
packages=(iproute2 tshark graphviz chromium chromium-driver curl apache2-utils wrk procps
    fonts-noto-cjk netcat-openbsd iputils-ping)
missing=()
for package in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
        || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "system packages: all present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "system packages missing (${missing[*]}) and not root: tests that need them will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# tshark asks whether non-root users may capture; answer no, non-interactively.
echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "system packages installed: ${missing[*]}"
