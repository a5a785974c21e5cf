#!/usr/bin/env bash
# torchdistill's ImageNet ResNet-18 benchmark rows that this framework can run (docs/source/_static/benchmarks/
# imagenet-resnet18_kd.tsv): KD, AT, FT, CRD, SSKD, KR (ReviewKD), DIST from a pretrained torchvision ResNet-34, and
# Tf-KD from a pretrained ResNet-18; cfg/experiment/torchdistill/. Needs ImageNet and the teachers' weights:
#   scripts/reproduce_torchdistill.sh [--ray] [--dry-run] [--only GLOB] -- data.root=/path/to/ILSVRC2012
# (torchvision's resnet34-b627a593.pth / resnet18-f37072fd.pth in $TORCH_HOME/hub/checkpoints/, see the cells.)
# Each cell runs the process layout of its published log: most ran 3 processes (DDP on 3 GPUs, trainer.devices=3);
# on another number of GPUs N, pass trainer.devices=N and data.batch_size=<global batch>/N (the cells' headers give
# the global batch). SEEDS: one run per configuration, as torchdistill publishes. Tables: last and best epoch (the
# published numbers are the best epoch's), each cell against its published value (make_table.py --published).
PAPER=torchdistill
DEFAULT_SEEDS="0"
make_tables() {
  local order=()
  if [ "$FULL" -eq 1 ]; then order=(--row-order kd,at,ft,crd,tfkd_self,sskd,reviewkd,dist); fi
  table --rows kd.name --cols student.name "${order[@]}" --published --out "$OUT/table"
}
source "$(dirname "$0")/reproduce_common.sh"
