#!/usr/bin/env bash
# "Does Knowledge Distillation Really Work?" (Stanton et al., NeurIPS 2021): ensemble teachers -> students on
# CIFAR-100 with and without mixup, and IMDB LSTMs; accuracy and fidelity (agreement, KL); cfg/experiment/fidelity/.
#   scripts/reproduce_fidelity.sh [--ray] [--dry-run] [--only GLOB] [-- trainer=gpu]
# SEEDS: 3 (gnosis README: trial_id=0,1,2). Teachers (3 members, seeds 0-2) are shared by every student seed.
PAPER=fidelity
DEFAULT_SEEDS="0 1 2"
make_tables() {
  local metric
  for metric in test/agreement test/kl test/top1; do  # no published values: --published says so under the last
    table --rows augment.name --cols data.name,teacher.model.name,student.name --epoch last --metric "$metric" \
      --published --out "$OUT/table_${metric#test/}"
  done
}
source "$(dirname "$0")/reproduce_common.sh"
