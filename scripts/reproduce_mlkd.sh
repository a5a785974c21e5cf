#!/usr/bin/env bash
# MLKD's cells (Jin et al., CVPR 2023) with and without logit standardization (Sun et al., CVPR 2024): the MLKD and
# MLKD+Ours rows of the LSKD README's CIFAR-100 tables (sunshangquan/logit-standardization-KD), 14 pairs each;
# cfg/experiment/mlkd/ (kd=mlkd, kd=mlkd_ls). The MLKD README (Jin-Ying/Multi-Level-Logit-Distillation) publishes
# no table of its own.
#   scripts/reproduce_mlkd.sh [--dry-run] [--only GLOB] [--skip GLOB] [-- trainer=gpu]
# SEEDS: 5, as mdistiller's CIFAR protocol (issue #30); the LSKD logs hold one run per cell.
# Tables: the best epoch, as both anchors' mdistiller trainer reports it, each cell against its published value.
PAPER=mlkd
DEFAULT_SEEDS="0 1 2 3 4"
make_tables() {
  table --rows kd.name --cols teacher.model.name,student.name --epoch best --filter data.name=cifar100 \
    --published --out "$OUT/table_cifar100"
}
source "$(dirname "$0")/reproduce_common.sh"
