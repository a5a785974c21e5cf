#!/usr/bin/env bash
# CTKD's cells (Li et al., AAAI 2023; zhengli97/CTKD README.md): KD+CTKD on its 6 CIFAR-100 pairs and on ImageNet
# ResNet-34 -> ResNet-18; cfg/experiment/ctkd/. The README's KD rows are RepDistiller's: scripts/reproduce_repdistiller.sh;
# CTKD with logit standardization: scripts/reproduce_lskd.sh --only 'ctkd*'.
#   scripts/reproduce_ctkd.sh [--ray] [--dry-run] [--only GLOB] [-- trainer=gpu data.root=/path/to/imagenet]
# SEEDS: 3 (the README does not say how many runs it averages); the ImageNet cell takes SEEDS_IMAGENET (default 1
# seed), runs on 8 GPUs as the anchor did (trainer.devices=N data.batch_size=256/N for N others) and needs
# data.root=PATH; leave it out with --skip '*_resnet34_resnet18'.
# Tables: the best epoch (train_student.py reports best_acc), each cell against its published value.
PAPER=ctkd
DEFAULT_SEEDS="0 1 2"
cell_seeds() { case "$1" in *_resnet34_resnet18) echo "${SEEDS_IMAGENET:-0}" ;; *) echo "$SEEDS" ;; esac; }
make_tables() {
  table --rows kd.name --cols teacher.model.name,student.name --epoch best --filter data.name=imagenet \
    --published --out "$OUT/table_imagenet" || true  # no ImageNet record when that cell was skipped
  table --rows kd.name --cols teacher.model.name,student.name --epoch best --filter data.name=cifar100 \
    --published --out "$OUT/table_cifar100"
}
source "$(dirname "$0")/reproduce_common.sh"
