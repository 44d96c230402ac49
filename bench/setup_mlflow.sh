#!/usr/bin/env bash
# A benchmark-only virtualenv with MLflow's tracking server and a PostgreSQL driver, kept
# outside the repository: mlflow must never be installed into the project's own venv (its
# dependencies would then be part of what the tests run against).
#
#   bash bench/setup_mlflow.sh            # -> /tmp/traindock-mlflow-venv
#   MLFLOW_VENV=/somewhere bash bench/setup_mlflow.sh
#   MLFLOW_VERSION=3.18.0 bash bench/setup_mlflow.sh   # pin a version (default: newest)
set -euo pipefail

venv="${MLFLOW_VENV:-/tmp/traindock-mlflow-venv}"
spec="mlflow${MLFLOW_VERSION:+==$MLFLOW_VERSION}"
python="${PYTHON:-python3}"

if [ -x "$venv/bin/mlflow" ] && "$venv/bin/python" -c "import mlflow, psycopg2" 2>/dev/null; then
    echo "MLflow already installed in $venv: $("$venv/bin/python" -c 'import mlflow; print(mlflow.__version__)')"
    exit 0
fi
# `python3 -m venv` builds on the base interpreter even when run from the project's venv, so
# nothing of the project's site-packages is visible in the new one.
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet "$spec" psycopg2-binary
echo "MLflow $("$venv/bin/python" -c 'import mlflow; print(mlflow.__version__)') installed in $venv"
