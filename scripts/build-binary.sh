#!/usr/bin/env bash
# Build the single-file executable: dist/selective-imager (dist/selective-imager.exe on Windows).
#
#   scripts/build-binary.sh            one file (unpacks itself into a temp dir at each start)
#   scripts/build-binary.sh --onedir   a directory dist/selective-imager-dir/ (starts faster)
#
# PyInstaller freezes the interpreter, the package, the rule library (package data) and
# every compiled binding. The format registries import their modules by name
# (importlib.import_module("module:Class")), which PyInstaller's analysis cannot see,
# hence --collect-submodules selective_imager.
#
# Linux: run it on the oldest glibc the executable must run on (it links against the
# build machine's glibc). Windows: run it from Git Bash (or MSYS2) with a Windows Python
# 3.11+ on PATH; the same flags apply, the venv's scripts are in .venv/Scripts and the
# result is dist/selective-imager.exe. Nothing here builds a Windows executable on Linux.
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

# Debug symbols are most of the bindings' size (and of the onefile's unpacking at each
# start): strip them in the build venv's own copies. Not PyInstaller's --strip: it also
# strips numpy's auditwheel-patched OpenBLAS, which then fails to load ("ELF load command
# address/offset not page-aligned"). strip(1) is binutils, absent on Windows.
if command -v strip >/dev/null && [ "$(uname -s)" = Linux ]; then
    site=$("$bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')
    find "$site" -maxdepth 1 -name 'py*.cpython-*.so' -exec strip --strip-debug {} +
fi

"$bin/python" -m PyInstaller --noconfirm --clean --log-level WARN "$mode" \
    --name selective-imager \
    --distpath "$distpath" --workpath build/pyinstaller --specpath build \
    --collect-submodules selective_imager \
    --collect-data selective_imager \
    "${hidden[@]}" \
    --exclude-module tkinter --exclude-module pytest --exclude-module hypothesis \
    selective_imager/__main__.py

exe="$distpath/selective-imager"
[ -d "$exe" ] && exe="$exe/selective-imager"
[ -f "$exe.exe" ] && exe="$exe.exe"
"$exe" --version
echo "built $exe ($(du -sh "$distpath/selective-imager" | cut -f1))"
