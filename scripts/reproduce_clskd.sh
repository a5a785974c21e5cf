#!/usr/bin/env bash
# NKD on ImageNet (Yang et al., ICCV 2023; code yzd-v/cls_KD, nkd.md): ResNet-34 -> ResNet-18 and ResNet-50 ->
# MobileNet-V1, 8 processes x batch 32 as tools/dist_train.sh runs them; 2 cells, cfg/experiment/clskd/. They need
# ImageNet (data.root=PATH) and torchvision's pretrained teachers in the torch hub cache (see each cell's header).
#   scripts/reproduce_clskd.sh [--ray] [--dry-run] [--only GLOB] [-- trainer=gpu data.root=/path/to/imagenet]
# SEEDS: 1 (nkd.md states no count). Tables: the last and the best epoch, each cell against its published value.
PAPER=clskd
DEFAULT_SEEDS="0"
make_tables() {
  table --rows kd.name --cols teacher.model.name,student.name --published --out "$OUT/table"
}
source "$(dirname "$0")/reproduce_common.sh"
