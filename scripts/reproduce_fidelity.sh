#!/usr/bin/env bash
# "Does Knowledge Distillation Really Work?" (Stanton et al., NeurIPS 2021; code samuelstanton/gnosis): CIFAR-100
# PreResNet-20 and IMDB LSTM students from one teacher (the README's commands) or a 3-member ensemble (the paper's
# ensemble teachers), with and without mixup, and with synthetic GAN data; accuracy and fidelity (agreement, KL);
# cfg/experiment/fidelity/.
#   scripts/reproduce_fidelity.sh [--ray] [--dry-run] [--only GLOB] [-- trainer=gpu]
# SEEDS: 3 (gnosis README: trial_id=0,1,2). One-teacher cells: student seed s distils from the teacher of seed s;
# ensemble cells: the 3 members (seeds 0-2) are shared by every student seed. The synthetic cell needs a generator
# trained first on the same data and scaling (GENERATOR=path, default outputs/gan/cifar100-s0/generator.pt):
#   python scripts/train_gan.py data=cifar100 data.mean=[0.5,0.5,0.5] data.std=[0.5,0.5,0.5]
PAPER=fidelity
DEFAULT_SEEDS="0 1 2"
GENERATOR="${GENERATOR:-outputs/gan/cifar100-s0/generator.pt}"
cell_args() {
  case "$1" in *synthetic*) echo "augment.generator=$GENERATOR" ;; esac
}
make_tables() {
  local metric
  for metric in test/agreement test/kl test/top1; do  # no published values: --published says so under each
    table --rows teacher.kind,augment.name --cols data.name,teacher.model.name,student.name --epoch last \
      --metric "$metric" --published --out "$OUT/table_${metric#test/}"
  done
}
source "$(dirname "$0")/reproduce_common.sh"
