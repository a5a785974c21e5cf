#!/usr/bin/env bash
# KD++ and DKD++ (Wang et al., ICCV 2023; code WangYZ1608/Knowledge-Distillation-via-ND): its README's CIFAR-100 table
# (table 1.1), 6 teacher-student pairs x KD++ / DKD++ with the per-pair weights of CIFAR/train_cifar.sh; 12 cells,
# cfg/experiment/kdpp/. Each run first averages the teacher's embedding per class over the training set (the ND
# term's class centres, as CIFAR/emb_fea_distribution.py does).
#   scripts/reproduce_kdpp.sh [--ray] [--dry-run] [--only GLOB] [-- trainer=gpu]
# SEEDS: 5 (the README states no count for CIFAR; its ImageNet figures average 5 trials). Tables: the last and the
# best epoch (the README does not say which it reports), each cell against its published value.
PAPER=kdpp
DEFAULT_SEEDS="0 1 2 3 4"
make_tables() {
  table --rows kd.name --cols teacher.model.name,student.name --published --out "$OUT/table"
}
source "$(dirname "$0")/reproduce_common.sh"
