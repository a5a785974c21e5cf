#!/usr/bin/env bash
# Logit standardization's cells (Sun et al., CVPR 2024; sunshangquan/logit-standardization-KD README.md): KD, CTKD and
# DKD with and without logit standardization on its 14 CIFAR-100 teacher-student pairs; cfg/experiment/lskd/.
#   scripts/reproduce_lskd.sh [--ray] [--dry-run] [--only GLOB] [-- trainer=gpu]
#   e.g. only the standardized rows: --only '*_ls_*'; one row: --only 'dkd_ls_*'
# SEEDS: 5 (the README calls its numbers averages without saying over how many runs; 5 as mdistiller, its base).
# Tables: the best epoch, as its trainers report (mdistiller's best_acc, CTKD's best_acc), each cell against its
# published value (make_table.py --published); kd.name keeps the rows apart (kd, kd_ls, ctkd, ctkd_ls, dkd, dkd_ls).
PAPER=lskd
DEFAULT_SEEDS="0 1 2 3 4"
make_tables() {
  table --rows kd.name --cols teacher.model.name,student.name --epoch best --published --out "$OUT/table_cifar100"
}
source "$(dirname "$0")/reproduce_common.sh"
