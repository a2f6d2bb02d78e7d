#!/usr/bin/env bash
# Create ./.venv and install hybrid_asd with everything the tests and the demo need.
# Usage: bash scripts/setup.sh [extra ...]   (extras default to: cpu,nflows,test,grid)
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-cpu,nflows,test,grid}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install --quiet --upgrade pip
# timm needs torchvision; on this project's machines the working pair is torch 2.14.1 +
# torchvision 0.29.1 (see docs/architecture.md, "Dependencies"). Installed first so that the
# package install below resolves to them instead of pulling another build.
python -m pip install --quiet "torch==2.14.1" "torchvision==0.29.1"
python -m pip install --quiet -e ".[${extras}]"
python -c "import hybrid_asd, torch, timm, faiss; print('hybrid_asd', hybrid_asd.__version__, '| torch', torch.__version__, '| timm', timm.__version__, '| faiss', faiss.__version__)"
