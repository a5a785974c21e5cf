#!/usr/bin/env bash
# Comparative KD's few-teacher-call study (Wilf et al., WACV 2025; code alextxu/ckd): CIFAR-100 ResNet-110 ->
# ResNet-32 with 1600 / 3200 / 4800 teacher calls (subset_size 2000 / 4000 / 6000) by KD, CRD, DIST, CKD, mixup
# and mixup-interpolated; 18 cells, cfg/experiment/ckd/.
#   scripts/reproduce_ckd.sh [--ray] [--dry-run] [--only GLOB] [-- trainer=gpu]
# SEEDS: 3 (ckd.yml, relational.yml, mixup.yml: seed 1, 2, 3). Table: test top-1 at the best validation epoch
# (CKD's protocol); each run's record.json counts the teacher calls it made (teacher_calls, teacher_examples).
PAPER=ckd
DEFAULT_SEEDS="1 2 3"
make_tables() {
  table --rows kd.name,augment.name --cols teacher.budget --epoch best --published --out "$OUT/table"  # none published
}
source "$(dirname "$0")/reproduce_common.sh"
