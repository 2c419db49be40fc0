#!/usr/bin/env bash
# Build the single-file executable: dist/selective-imager (dist/selective-imager.exe on Windows).
#
#   scripts/build-binary.sh            one file (unpacks itself into a temp dir at each start)
#   scripts/build-binary.sh --onedir   a folder dist/onedir/selective-imager/ (starts faster)
#
# PyInstaller freezes the interpreter, the package, the rule library (package data) and
# every compiled binding. The format registries import their modules by name
# (importlib.import_module("module:Class")), which PyInstaller's analysis cannot see,
# hence --collect-submodules selective_imager.
#
# Linux: run it on the oldest glibc the executable must run on (it links against the
# build machine's glibc). Windows: run it from Git Bash (or MSYS2) with a Windows Python
# 3.11+ on PATH; the same flags apply, the build venv's scripts are in build/venv/Scripts,
# nothing is stripped, and the result is dist/selective-imager.exe. PyInstaller does not
# cross-compile: nothing here builds a Windows executable on Linux (and none was tried).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=--onefile
distpath=dist
if [ "${1:-}" = --onedir ]; then
    mode=--onedir
    distpath=dist/onedir
fi

PY="${PYTHON:-python3}"
venv=build/venv
if [ -x "$venv/Scripts/python.exe" ]; then bin="$venv/Scripts"; else bin="$venv/bin"; fi
if [ ! -x "$bin/python" ] && [ ! -x "$bin/python.exe" ]; then
    "$PY" -m venv "$venv"
    if [ -x "$venv/Scripts/python.exe" ]; then bin="$venv/Scripts"; else bin="$venv/bin"; fi
fi
# A build venv of its own: the runtime dependencies plus PyInstaller (the `build` extra).
"$bin/python" -m pip install -q --disable-pip-version-check '.[build]' 2>&1 \
    | grep -v -e '^WARNING: Location' -e 'is ignored' || true

bindings=(pytsk3 pyfsntfs pybde pyewf pyvmdk pyvhdi pyqcow pyvshadow pyluksde
          pyfsapfs pyfsxfs pyfsext pyfshfs)
hidden=()
for module in "${bindings[@]}" zlib_ng argon2 yaml; do
    hidden+=(--hidden-import "$module")
done

# Symbols are a third of the bundle (libpython, lib-dynload, the bindings), and the onefile
# unpacks all of it at each start: PyInstaller's --strip runs `strip` from PATH on every
# binary. A shim on PATH leaves out the libraries auditwheel patched (name-<8 hex>.so*,
# e.g. numpy's OpenBLAS): stripped, they no longer load ("ELF load command address/offset
# not page-aligned"). strip(1) is binutils, absent on Windows: no stripping there.
strip=()
real_strip=$(command -v strip || true)
if [ -n "$real_strip" ] && [ "$(uname -s)" = Linux ]; then
    mkdir -p build/strip-shim
    cat >build/strip-shim/strip <<SHIM
#!/bin/sh
for f in "\$@"; do :; done
case "\${f##*/}" in
    *-[0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f].so*) exit 0 ;;
esac
exec "$real_strip" "\$@"
SHIM
    chmod +x build/strip-shim/strip
    export PATH="$PWD/build/strip-shim:$PATH"
    strip=(--strip)
fi

"$bin/python" -m PyInstaller --noconfirm --clean --log-level WARN "$mode" "${strip[@]}" \
    --name selective-imager \
    --distpath "$distpath" --workpath build/pyinstaller --specpath build \
    --collect-submodules selective_imager \
    --collect-data selective_imager \
    "${hidden[@]}" \
    --exclude-module tkinter --exclude-module pytest --exclude-module hypothesis \
    selective_imager/__main__.py

exe="$distpath/selective-imager"
sized="$exe"
[ -d "$exe" ] && exe="$exe/selective-imager"
[ -f "$exe.exe" ] && exe="$exe.exe" && sized="$exe"
"$exe" --version
echo "built $exe ($(du -sh "$sized" | cut -f1))"
