#!/usr/bin/env bash
# Set up jaxnets on a fresh machine; safe to run again (it skips what is already done).
#   bash scripts/setup.sh          runtime only
#   bash scripts/setup.sh dev      plus the test tools (pytest, nbmake, ipykernel, …)
# Makes .venv at the repository root, installs the package into it (editable), and installs
# Debian's dataset-fashion-mnist package where apt is usable (else the digits set is used).
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRA="${1:-}"
PYTHON="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($PYTHON --version 2>&1)"
    "$PYTHON" -m venv .venv
fi

SPEC="."
[ -n "$EXTRA" ] && SPEC=".[$EXTRA]"
STAMP=".venv/.jaxnets-installed-$(cat pyproject.toml | sha256sum | cut -c1-16)-${EXTRA:-runtime}"
if [ ! -f "$STAMP" ]; then
    echo "[setup] installing jaxnets $SPEC into .venv (first time: a few minutes)"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e "$SPEC"
    touch "$STAMP"
else
    echo "[setup] .venv is up to date"
fi

if [ ! -d /usr/share/datasets/fashion-mnist ]; then
    SUDO=""
    [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null && SUDO="sudo -n"
    if command -v apt-get >/dev/null 2>&1 && { [ "$(id -u)" -eq 0 ] || [ -n "$SUDO" ]; }; then
        echo "[setup] installing Debian's dataset-fashion-mnist (30 MB)"
        if ! { $SUDO apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1 \
               || { $SUDO apt-get update -qq >/dev/null 2>&1 && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null 2>&1; }; }; then
            echo "[setup] could not install dataset-fashion-mnist; the embedded digits set will be used"
        fi
    else
        echo "[setup] apt not usable here; Fashion-MNIST not installed (see README: Data); digits will be used"
    fi
fi
