#!/usr/bin/env bash
# TTM and WTTM (Zheng and Yang, ICLR 2024; code zkxufo/TTM): the TTM and WTTM rows of its README's two CIFAR-100
# tables, on RepDistiller's 13 teacher-student pairs, recipe and teachers; 26 cells, cfg/experiment/ttm/.
#   scripts/reproduce_ttm.sh [--ray] [--dry-run] [--only GLOB] [-- trainer=gpu]
# The per-pair exponent and weight are in the paper's appendix A.4, not in the repository: the cells run the README's
# examples (see each cell's header); pass kd.terms.ttm.exponent=... kd.terms.ttm.weight=... with --only for a pair.
# SEEDS: 5 (the paper: mean of 5 runs). Tables: the last and the best epoch (the README does not say which it
# reports), each cell against its published value (make_table.py --published).
PAPER=ttm
DEFAULT_SEEDS="0 1 2 3 4"
make_tables() {
  table --rows kd.name --cols teacher.model.name,student.name --published --out "$OUT/table"
}
source "$(dirname "$0")/reproduce_common.sh"
