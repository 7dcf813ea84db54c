#!/usr/bin/env bash
# Create .venv and install synthcodec into it (editable), once. Re-running reuses it: the
# install is redone only when pyproject.toml or the requested extras change.
# Usage: scripts/setup.sh [EXTRAS]   e.g. scripts/setup.sh dev,train
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-}"
python="${PYTHON:-}"
if [ -z "$python" ]; then
  for candidate in python3.11 python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
      python="$candidate"; break
    fi
  done
fi
[ -n "$python" ] || { echo "setup: Python >= 3.11 is required" >&2; exit 1; }
[ -x .venv/bin/python ] || "$python" -m venv .venv
hash="$(sha256sum pyproject.toml | cut -c1-16)"
# Done already if an install from this pyproject.toml covered every requested extra.
covered() {
  local stamp have want
  for stamp in .venv/.installed-"$hash"-*; do
    [ -f "$stamp" ] || continue
    have=",$(cat "$stamp"),"
    for want in ${extras//,/ }; do
      [[ "$have" == *",$want,"* ]] || continue 2
    done
    return 0
  done
  return 1
}
if ! covered; then
  echo "setup: installing synthcodec${extras:+[$extras]} into .venv (the first time compiles llama.cpp: ~6 minutes)" >&2
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  if [[ ",$extras," == *",train,"* ]]; then
    # The CPU build of torch; any other spec would pull gigabytes of CUDA packages.
    .venv/bin/python -m pip install -q "torch==2.13.0"
  fi
  jobs="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}"
  if [[ ",$extras," =~ ,(local|dev|server), ]]; then
    # llama.cpp for a generic AVX2 CPU, built once into our own wheel folder. pip's own
    # cache would keep a -march=native build, which crashes on another CPU (and did, in
    # llama_decode, on a VM whose CPU reports AMX): the portable wheel runs on any x86-64
    # with AVX2, and re-running setup, or a fresh clone, reuses it.
    llama="llama-cpp-python==0.3.36"
    wheels="${SYNTHCODEC_WHEELS:-$HOME/.cache/synthcodec/wheels}/llama-portable"
    if ! ls "$wheels"/llama_cpp_python-0.3.36-*.whl >/dev/null 2>&1; then
      mkdir -p "$wheels"
      CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
        CMAKE_BUILD_PARALLEL_LEVEL="$jobs" \
        .venv/bin/python -m pip wheel -q --no-cache-dir --no-deps "$llama" -w "$wheels"
    fi
    .venv/bin/python -m pip install -q --no-deps --force-reinstall --only-binary llama-cpp-python \
      --find-links "$wheels" "$llama"
  fi
  CMAKE_BUILD_PARALLEL_LEVEL="$jobs" .venv/bin/python -m pip install -q -e ".${extras:+[$extras]}"
  find .venv -maxdepth 1 -name '.installed-*' ! -name ".installed-$hash-*" -delete
  echo "$extras" > ".venv/.installed-$hash-${extras//,/_}"
fi
# The viewer's browser tests drive Debian's chromium through its chromedriver (no browser
# download). Installed only for the dev extra, only as root with apt; otherwise those tests
# skip and say why.
if [[ ",$extras," == *",dev,"* ]] && [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] &&
   command -v apt-get >/dev/null 2>&1; then
  echo "setup: installing chromium and chromium-driver (apt) for the viewer's browser tests" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null ||
    echo "setup: could not install chromium: the browser tests will skip" >&2
fi
