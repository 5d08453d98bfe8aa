#!/usr/bin/env bash
# Sourced by scripts/test.sh and scripts/demo.sh: makes sure the Debian libraries Open3D needs are
# present and that .venv holds requirements.txt, then puts .venv first on PATH.
# Where nvidia-smi finds a GPU, requirements-gpu.txt (TensorFlow with its CUDA libraries) is
# installed instead; KFNET_GPU=1 asks for it, KFNET_GPU=0 refuses it.
# Nothing is reinstalled when the requirements have not changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${KFNET_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

debs=(libusb-1.0-0 libgl1 libgomp1 libvulkan1 mesa-vulkan-drivers)
missing=()
if command -v dpkg-query >/dev/null 2>&1; then
  for p in "${debs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
fi
if [ "${#missing[@]}" -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "[setup] creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
gpu="${KFNET_GPU:-auto}"
if [ "$gpu" = auto ]; then
  gpu=0
  if command -v nvidia-smi >/dev/null 2>&1 && [ -n "$(nvidia-smi -L 2>/dev/null | grep '^GPU ' || true)" ]; then
    gpu=1
  fi
fi
reqs="$ROOT/requirements.txt"
if [ "$gpu" = 1 ]; then
  reqs="$ROOT/requirements-gpu.txt"
fi
stamp="$VENV/.requirements.sha256"
want="$(cat "$ROOT/requirements.txt" "$reqs" | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing $(basename "$reqs") into $VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r "$reqs"
  echo "$want" > "$stamp"
fi
export PATH="$VENV/bin:$PATH"
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-2}"
cd "$ROOT"
