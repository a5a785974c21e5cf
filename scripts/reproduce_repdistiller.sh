#!/usr/bin/env bash
# RepDistiller's two CIFAR-100 tables (Tian et al., ICLR 2020; README.md) and the CRD paper's CRD+KD row: every
# published cell, 175 runs per seed (14 methods x 13 teacher -> student pairs, less FSP where the tables have no
# number), cfg/experiment/repdistiller/.
#   scripts/reproduce_repdistiller.sh [--ray] [--dry-run] [--only GLOB] [-- trainer=gpu ...]
# SEEDS: RepDistiller's README gives one number per cell and no seed count (its scripts pass --trial 1); three
# seeds here for mean +- std. Teachers are trained once (seed 0) and shared by every method and seed; to use
# RepDistiller's released ones instead, fetch them (its scripts/fetch_pretrained_teachers.sh) and run a column
# with e.g. --only '*_resnet32x4_*' -- teacher.checkpoint=save/models/resnet32x4_vanilla/ckpt_epoch_240.pth
# The KD cells also train the student from scratch (baseline=true: once per student and seed, reused), which
# fills the tables' "Student" row. Table: last epoch (RepDistiller issue #16), each cell against its published value
# (make_table.py --published), in $OUT/table.md.
PAPER=repdistiller
DEFAULT_SEEDS="0 1 2"
cell_args() { case "$1" in repdistiller/kd_*) echo baseline=true ;; esac; }
make_tables() {
  local order=()  # the README's order, once every cell has run (an order naming a missing label is refused)
  if [ "$FULL" -eq 1 ]; then
    order=(--row-order scratch,kd,fitnet,at,sp,cc,vid,rkd,pkt,ab,ft,fsp,nst,crd,crd_kd --join "/" --col-order
           "wrn_40_2/wrn_16_2,wrn_40_2/wrn_40_1,resnet56/resnet20,resnet110/resnet20,resnet110/resnet32,$(
           )resnet32x4/resnet8x4,vgg13/vgg8,vgg13/mobilenetv2,resnet50_cifar/mobilenetv2,resnet50_cifar/vgg8,$(
           )resnet32x4/shufflenetv1,resnet32x4/shufflenetv2,wrn_40_2/shufflenetv1")
  fi
  table --rows kd.name --cols teacher.model.name,student.name --epoch last --baselines --label "-=scratch" \
    "${order[@]}" --published --out "$OUT/table"
}
source "$(dirname "$0")/reproduce_common.sh"
