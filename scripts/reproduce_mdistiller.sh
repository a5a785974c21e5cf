#!/usr/bin/env bash
# mdistiller's cells (Zhao et al., CVPR 2022; README.md): DKD on 11 CIFAR-100 pairs, and KD and DKD on ImageNet
# ResNet-34 -> ResNet-18 and ResNet-50 -> MobileNet-V1; KD+DOT (Zhao et al., ICCV 2023; optimizer=dot, row kd_dot) on
# 3 CIFAR-100 pairs and the same 2 ImageNet pairs (only DOT: --only 'kd_dot_*'); cfg/experiment/mdistiller/. Its CIFAR
# KD rows are RepDistiller's numbers: scripts/reproduce_repdistiller.sh.
#   scripts/reproduce_mdistiller.sh [--ray] [--dry-run] [--only GLOB] [-- trainer=gpu data.root=/path/to/imagenet]
# SEEDS: 5 (mdistiller issue #30: "average over 5/3 trials on CIFAR100/ImageNet"); the ImageNet cells take
# SEEDS_IMAGENET (default 3 seeds) and need data.root=PATH; leave them out with --skip '*_resnet34_resnet18'
# --skip '*_resnet50_mobilenetv1'.
# Tables: the best epoch, as mdistiller reports ("the best accuracies among epochs", issue #30), each cell against
# its published value (make_table.py --published).
PAPER=mdistiller
DEFAULT_SEEDS="0 1 2 3 4"
cell_seeds() { case "$1" in *_resnet34_resnet18|*_resnet50_mobilenetv1) echo "${SEEDS_IMAGENET:-0 1 2}" ;; *) echo "$SEEDS" ;; esac; }
make_tables() {
  table --rows kd.name --cols teacher.model.name,student.name --epoch best --filter data.name=imagenet \
    --published --out "$OUT/table_imagenet" || true  # no ImageNet record when those cells were skipped
  table --rows kd.name --cols teacher.model.name,student.name --epoch best --filter data.name=cifar100 \
    --published --out "$OUT/table_cifar100"
}
source "$(dirname "$0")/reproduce_common.sh"
