#!/usr/bin/env bash
# Creates .venv and installs the project into it. Idempotent: a second call with an
# unchanged pyproject.toml does nothing. Used by `make run` and `make test`.
#
# torch: with no GPU (no nvidia-smi), torch==2.13.0 is installed first — on the
# project's CPU machines that is a CPU build lying on local disk (small, fast). With a
# GPU, pip resolves torch from pyproject's range as usual and takes a CUDA build.
# Override with TORCH_SPEC, e.g. TORCH_SPEC='torch==2.13.0' or TORCH_SPEC=skip.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-}
if [ -z "$python" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      python=$candidate
      break
    fi
  done
fi
[ -n "$python" ] || { echo "setup: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

[ -x .venv/bin/python ] || "$python" -m venv .venv
stamp=.venv/.setup-stamp
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi

pip() { .venv/bin/python -m pip --disable-pip-version-check -q "$@"; }
if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
  spec=${TORCH_SPEC:-}
  if [ -z "$spec" ]; then
    if command -v nvidia-smi >/dev/null 2>&1; then spec=skip; else spec='torch==2.13.0'; fi
  fi
  [ "$spec" = skip ] || pip install "$spec"
fi
pip install -e '.[dev]'
echo "$want" > "$stamp"
