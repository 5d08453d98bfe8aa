#!/usr/bin/env bash
# The demo, from a fresh machine: install, generate the synthetic room, prepare it, run the whole
# pipeline with configs/synthetic.yaml and print SCoordNet alone vs KFNet.
#   bash scripts/demo.sh [WORK_FOLDER]        (default runs/demo; run again to resume or re-print)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
WORK="${1:-runs/demo}"
python scripts/make_synthetic_scene.py --output_folder "$WORK/scene" --size 160x120 --frames 300 \
    --sequences 3 --test_sequences 1 --seed 0 --no_progress
python scripts/prepare_7scenes.py --dataset_folder "$WORK/scene" --output_folder "$WORK/prepared" \
    --scene synthetic --no_progress
python scripts/run_pipeline.py --data_folder "$WORK/prepared" --work_folder "$WORK" --scene synthetic
