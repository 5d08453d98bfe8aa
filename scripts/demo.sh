#!/usr/bin/env bash
# The demo, from a fresh machine: install, generate the synthetic room, prepare it, run the whole
# pipeline with configs/synthetic.yaml and print SCoordNet alone vs KFNet.
#   bash scripts/demo.sh [WORK_FOLDER]        (default runs/demo; run again to resume or re-print)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup_env.sh"
WORK="${1:-runs/demo}"
# --loop_frames 100: 0.67 map cells of motion per frame, as 7-Scenes' test sequences at 640×480
# (0.7–1.2 cells); the default camera moves 0.23 cells per frame at this size (docs/results.md).
# Two training sequences and three test sequences (900 test frames): one 300-frame sequence cannot
# resolve differences of 10 % in median pose error; three narrow the intervals by a third to a half.
python scripts/make_synthetic_scene.py --output_folder "$WORK/scene" --size 160x120 --frames 300 \
    --sequences 5 --test_sequences 3 --loop_frames 100 --seed 0 --no_progress
python scripts/prepare_7scenes.py --dataset_folder "$WORK/scene" --output_folder "$WORK/prepared" \
    --scene synthetic --no_progress
python scripts/run_pipeline.py --data_folder "$WORK/prepared" --work_folder "$WORK" --scene synthetic
