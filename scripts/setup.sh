#!/usr/bin/env bash
# Set up a development/run environment from a fresh clone (idempotent).
#  - Debian packages: The Sleuth Kit (test oracles), unzip (container checks),
#    libbde-utils and cryptsetup-bin (independent BitLocker readers used by tests).
#  - A virtual environment in .venv with the package and its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v fls >/dev/null || need_apt+=(sleuthkit)
command -v unzip >/dev/null || need_apt+=(unzip)
[ -x /usr/bin/time ] || need_apt+=(time)  # bench/: peak RSS per run (GNU time -f %M)
command -v bdeinfo >/dev/null || need_apt+=(libbde-utils)
command -v cryptsetup >/dev/null || need_apt+=(cryptsetup-bin)
command -v 7zz >/dev/null || command -v 7z >/dev/null || need_apt+=(7zip)
# Oracles of the other formats: virtual disks, shadow copies, APFS, XFS, EWF, age,
# a local sshd for upload tests, headless Chromium for the HTML report, ntfs-3g/mkfs.
command -v qemu-img >/dev/null || need_apt+=(qemu-utils)
command -v vshadowinfo >/dev/null || need_apt+=(libvshadow-utils)
command -v fsapfsinfo >/dev/null || need_apt+=(libfsapfs-utils)
command -v mkapfs >/dev/null || need_apt+=(apfsprogs)
command -v mkfs.xfs >/dev/null || need_apt+=(xfsprogs)
command -v ewfverify >/dev/null || need_apt+=(ewf-tools)
command -v age >/dev/null || need_apt+=(age)
command -v sshd >/dev/null || [ -x /usr/sbin/sshd ] || need_apt+=(openssh-server)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v ntfs-3g >/dev/null || need_apt+=(ntfs-3g)
command -v sfdisk >/dev/null || [ -x /usr/sbin/sfdisk ] || need_apt+=(fdisk)
command -v mkfs.ext4 >/dev/null || [ -x /usr/sbin/mkfs.ext4 ] || need_apt+=(e2fsprogs)
command -v mkfs.vfat >/dev/null || [ -x /usr/sbin/mkfs.vfat ] || need_apt+=(dosfstools)
if ((${#need_apt[@]})); then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "setup: installing Debian packages: ${need_apt[*]}" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "setup: missing ${need_apt[*]} (install them; tests that need them will skip)" >&2
    fi
fi

PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 \
    | grep -v -e '^WARNING: Location' -e 'is ignored' || true
.venv/bin/python -c 'import pytsk3, pyfsntfs, pybde, pyewf, pyvmdk, pyvhdi, pyqcow, pyvshadow, pyluksde, pyfsapfs, pyfsxfs, typer, rich, yaml' \
    || { echo "setup: the Python dependencies did not install" >&2; exit 1; }
