# Shared by scripts/reproduce_<paper>.sh (sourced, not run). The paper's script sets:
#   PAPER          folder under cfg/experiment/ whose cells make the table
#   DEFAULT_SEEDS  seeds when SEEDS is not set
#   cell_args      (optional function) extra overrides for one run of a cell: cell_args EXPERIMENT SEED
#   cell_seeds     (optional function) the seeds of one cell, if not $SEEDS: cell_seeds EXPERIMENT
#   make_tables    function that writes the paper's tables from "$OUT" (calls table ARGS...; FULL=1 when
#                  every cell ran, so row/column orders naming every label apply)
#
# Usage of every reproduce script:
#   scripts/reproduce_<paper>.sh [--ray] [--dry-run] [--only GLOB] [--skip GLOB] [-- OVERRIDE ...]
#     --ray       launch the whole table on Ray Tune instead (python ray_runner.py search=<paper>)
#     --dry-run   print the commands, run nothing
#     --only GLOB only the cells whose name matches, e.g. --only 'crd_*'
#     --skip GLOB leave out the cells whose name matches, e.g. --skip '*_resnet18' (repeatable)
#     OVERRIDE    passed to every run, e.g. trainer=gpu, or teacher.checkpoint=... for one cell
#   Environment: SEEDS="0 1 2" (default: the paper's), OUT=folder (default outputs/<paper>),
#                PYTHON=python executable (default: python).
# Runs already finished are reused (their record is found by the config's hash), so a stopped script can be
# started again and continues where it stopped. Each run's failure is reported at the end; the others go on.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

SEEDS="${SEEDS:-$DEFAULT_SEEDS}"
OUT="${OUT:-outputs/$PAPER}"
PYTHON="${PYTHON:-python}"
RAY=0
DRY=0
ONLY="*"
SKIP=()
OVERRIDES=()
while [ $# -gt 0 ]; do
  case "$1" in
    --ray) RAY=1 ;;
    --dry-run) DRY=1 ;;
    --only) shift; ONLY="${1:?--only needs a glob, e.g. --only 'kd_*'}" ;;
    --skip) shift; SKIP+=("${1:?--skip needs a glob, e.g. --skip 'fsp_*'}") ;;
    --) shift; OVERRIDES=("$@"); break ;;
    -h|--help) sed -n '/^# Usage/,/^set -euo/p' scripts/reproduce_common.sh | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "error: unknown argument '$1'; use --ray, --dry-run, --only GLOB, --skip GLOB, or -- OVERRIDE ..." >&2
       exit 2 ;;
  esac
  shift
done

if ! declare -F cell_args > /dev/null; then cell_args() { :; }; fi
if ! declare -F cell_seeds > /dev/null; then cell_seeds() { echo "$SEEDS"; }; fi

run() {
  echo "+ $*"
  if [ "$DRY" -eq 0 ]; then "$@"; fi
}

table() {  # table ARGS...: scripts/make_table.py over this paper's distillation records
  if [ "$DRY" -eq 0 ] && [ ! -d "$OUT/distill" ]; then
    echo "no run records under $OUT/distill yet: no table" >&2
    return 0
  fi
  run "$PYTHON" scripts/make_table.py "$OUT/distill" "$@"
}

CELLS=()
FULL=1
for file in $(find "cfg/experiment/$PAPER" -name '*.yaml' | sort); do
  cell="${file#cfg/experiment/}"
  cell="${cell%.yaml}"
  keep=1
  # shellcheck disable=SC2053  # the patterns are globs on purpose
  [[ "${cell#"$PAPER"/}" == $ONLY ]] || keep=0
  for pattern in "${SKIP[@]}"; do
    # shellcheck disable=SC2053
    [[ "${cell#"$PAPER"/}" == $pattern ]] && keep=0
  done
  if [ "$keep" -eq 1 ]; then CELLS+=("$cell"); else FULL=0; fi
done
if [ "${#CELLS[@]}" -eq 0 ]; then
  echo "error: no cell of cfg/experiment/$PAPER matches --only '$ONLY'" >&2
  exit 2
fi

if [ "$RAY" -eq 1 ]; then
  # The search space (cfg/search/$PAPER.yaml) holds the grid of cells x seeds; SEEDS, --only, --skip do not apply.
  FULL=1
  if [ ! -f "cfg/search/$PAPER.yaml" ] && [ "$DRY" -eq 0 ]; then
    echo "error: cfg/search/$PAPER.yaml is missing: it must give a grid over experiment (the ${#CELLS[@]} cells of" \
         "cfg/experiment/$PAPER) and seed; or run without --ray" >&2
    exit 2
  fi
  run "$PYTHON" ray_runner.py "search=$PAPER" "paths.output_dir=$OUT" "${OVERRIDES[@]}"
else
  FAILED=()
  for cell in "${CELLS[@]}"; do
    entry=distill_train.py  # cells that say `task: train` (e.g. a teacher with a published accuracy) train one model
    if grep -q '^task: train' "cfg/experiment/$cell.yaml"; then entry=train.py; fi
    for seed in $(cell_seeds "$cell"); do
      # shellcheck disable=SC2046  # cell_args prints whitespace-free overrides
      if ! run "$PYTHON" "$entry" "experiment=$cell" "seed=$seed" "paths.output_dir=$OUT" \
          $(cell_args "$cell" "$seed") "${OVERRIDES[@]}"; then
        FAILED+=("$cell seed=$seed")
      fi
    done
  done
fi

make_tables
if [ "$RAY" -eq 0 ] && [ "${#FAILED[@]}" -gt 0 ]; then
  echo "failed runs (${#FAILED[@]}):" >&2
  printf '  %s\n' "${FAILED[@]}" >&2
  exit 1
fi
