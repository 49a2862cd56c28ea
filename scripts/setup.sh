#!/usr/bin/env bash
# Set up FacePic on a fresh machine: a virtual environment in .venv with FacePic, the face
# engine, the embedded database and the test servers. Needs Python 3.11+ and pip's registry.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
[ -d .venv ] || "$PYTHON" -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -r requirements/test.txt
python -m pip install -q --no-deps -r requirements/insightface.txt
python -m pip install -q --no-deps -e .
echo "FacePic is set up: run '. .venv/bin/activate' and then 'facepic --help'"
