#!/usr/bin/env bash
# Comparative KD's few-teacher-call study (Wilf et al., WACV 2025; code alextxu/ckd): CIFAR-100, RepDistiller's
# teachers -> resnet32 / wrn_16_2 / vgg8, 1600 ... 4800 teacher calls (subset_size 2000 ... 6000, the sweeps' 8
# sizes) by CKD (pos_and_neg 2 and 3), CRD, DIST, RKD, mixup and mixup3 (ckd.yml, relational.yml, mixup.yml);
# 168 cells, cfg/experiment/ckd/.
#   scripts/reproduce_ckd.sh [--ray] [--dry-run] [--only GLOB] [-- trainer=gpu]
# SEEDS: 3 (ckd.yml, relational.yml, mixup.yml: seed 1, 2, 3). Tables: test top-1 at the best validation epoch
# (CKD's protocol), rows by student and arm; each run's record.json counts the teacher calls it made (teacher_calls,
# teacher_examples).
PAPER=ckd
DEFAULT_SEEDS="1 2 3"
make_tables() {
  # No published numbers (results went to wandb): --published says so under the table.
  table --rows student.name,kd.name,kd.terms.ckd.pos_and_neg,augment.name --cols teacher.budget --epoch best \
    --published --out "$OUT/table"
}
source "$(dirname "$0")/reproduce_common.sh"
