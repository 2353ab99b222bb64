#!/usr/bin/env bash
# Runs hotslab's real-memory-hotplug test in a QEMU guest (qemu/tests/guest_hotplug.rs).
# On Debian, installs what it needs first: qemu-system-x86, busybox-static, gcc (the guest's C
# program) and numactl (run in the guest) with apt-get (root), the rustup musl target (else the
# guest is built with glibc +crt-static). The kernel package is downloaded and unpacked by the test
# itself into target/qemu/kernel/ (cached). Extra arguments go to the test binary, e.g.
# --nocapture. Set HOTSLAB_QEMU_ECHO=1 to see the guest console live.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v busybox >/dev/null || [ -x /bin/busybox ] || need+=(busybox-static)
command -v cc >/dev/null || need+=(gcc)
command -v numactl >/dev/null || need+=(numactl)
if [ ${#need[@]} -gt 0 ] || ! apt-cache depends linux-image-amd64 2>/dev/null | grep -q 'Depends: linux-image-'; then
    if [ "$(id -u)" != 0 ]; then
        echo "qemu/run.sh: need root to apt-get install: ${need[*]:-} (or the package lists)" >&2
        exit 1
    fi
    apt-get update -qq
    if [ ${#need[@]} -gt 0 ]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
    fi
fi
rustup target add x86_64-unknown-linux-musl >/dev/null 2>&1 ||
    echo "qemu/run.sh: no musl target; the guest is built for glibc with +crt-static" >&2

exec cargo test --manifest-path qemu/Cargo.toml --target-dir target/qemu/host \
    --test guest_hotplug -- --ignored --nocapture "$@"
