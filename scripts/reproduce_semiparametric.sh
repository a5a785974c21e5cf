#!/usr/bin/env bash
# The semiparametric KD teacher-depth study (Dao et al., ICLR 2021; cifar_plot.py): CIFAR-10, ResNet-d teachers
# (d = 8, 14, 20, 32, 44, 56) -> CNN5, by KD, cross-fit KD and enhanced KD (cross-fit + gamma-corrected loss);
# 18 cells, cfg/experiment/semiparametric/.
#   scripts/reproduce_semiparametric.sh [--ray] [--dry-run] [--only GLOB] [-- trainer=gpu]
# SEEDS: 5 (cifar_plot.py: mean over 5 replications). Teachers (and each seed's 5 fold teachers) are trained
# per seed, as the study's teacher accuracies vary over replications. Plot: scripts/plots.py capacity.
PAPER=semiparametric
DEFAULT_SEEDS="0 1 2 3 4"
make_tables() {
  local order=()
  if [ "$FULL" -eq 1 ]; then order=(--col-order resnet8,resnet14,resnet20,resnet32,resnet44,resnet56); fi
  table --rows teacher.kind,kd.name --cols teacher.model.name --epoch last --metric test/nll "${order[@]}" \
    --out "$OUT/table_nll"
  table --rows teacher.kind,kd.name --cols teacher.model.name --epoch last "${order[@]}" --published --out "$OUT/table"
}
source "$(dirname "$0")/reproduce_common.sh"
