#!/usr/bin/env bash
# The semiparametric KD teacher-depth study (Dao et al., ICLR 2021; cifar_plot.py): CIFAR-10, ResNet-d teachers
# (d = 8, 14, 20, 32, 44, 56, option-A shortcuts) -> CNN5, by KD, cross-fit KD and enhanced KD (cross-fit +
# gamma-corrected loss); the enhanced-KD alpha ablation at depth 20 (alpha_ablation); the cross-fit teachers
# (fold 0, train cells); 31 cells, cfg/experiment/semiparametric/.
#   scripts/reproduce_semiparametric.sh [--ray] [--dry-run] [--only GLOB] [-- trainer=gpu]
# SEEDS: 5 (cifar_plot.py: mean over 5 replications). Teachers (and each seed's 5 fold teachers) are trained
# per seed, as the study's teacher accuracies vary over replications. Plot: scripts/plots.py capacity.
PAPER=semiparametric
DEFAULT_SEEDS="0 1 2 3 4"
ran() {  # ran GLOB: whether a cell of this paper matching GLOB was run
  local cell
  for cell in "${CELLS[@]}"; do
    # shellcheck disable=SC2053  # a glob on purpose
    [[ "${cell#"$PAPER"/}" == $1 ]] && return 0
  done
  return 1
}
make_tables() {
  # the alpha ablation: enhanced KD at depth 20, one row per alpha (= kd.terms.kd_mse_gamma.weight)
  if ran 'enhanced_kd_alpha*'; then
    table --rows kd.terms.kd_mse_gamma.weight --cols teacher.model.name --filter kd.name=kd_mse_gamma \
      --filter teacher.model.name=resnet20 --epoch last --published --out "$OUT/table_alpha"
  fi
  # the cross-fit teachers: fold 0 of every cross-fit run and the train cells (records under $OUT/train)
  if ran 'crossfit_*' && { [ "$DRY" -eq 1 ] || [ -d "$OUT/train" ]; }; then
    run "$PYTHON" scripts/make_table.py "$OUT/train" --rows model.name --cols '' --filter data.crossfit.fold=0 \
      --epoch last --published --out "$OUT/table_crossfit_teachers"
  fi
  ran 'kd_resnet*' || ran 'crossfit_kd_*' || ran 'enhanced_kd_resnet*' || return 0  # a depth-study cell ran
  local order=()
  if [ "$FULL" -eq 1 ]; then order=(--col-order resnet8,resnet14,resnet20,resnet32,resnet44,resnet56); fi
  # the depth study: enhanced KD at its alpha 0.01 only (the ablation's other alphas have their own table)
  local study=(--filter 'kd.terms.kd_mse_gamma.weight=-,0.01')
  table --rows teacher.kind,kd.name --cols teacher.model.name --epoch last --metric test/nll "${study[@]}" \
    "${order[@]}" --out "$OUT/table_nll"
  table --rows teacher.kind,kd.name --cols teacher.model.name --epoch last "${study[@]}" "${order[@]}" --published \
    --out "$OUT/table"
}
source "$(dirname "$0")/reproduce_common.sh"
