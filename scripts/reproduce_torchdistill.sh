#!/usr/bin/env bash
# torchdistill's ImageNet ResNet-18 benchmark rows that this framework can run (docs/source/_static/benchmarks/
# imagenet-resnet18_kd.tsv): KD, AT, FT, CRD, SSKD, L2, PAD-L2, KR (ReviewKD), DIST from a pretrained torchvision
# ResNet-34, and Tf-KD from a pretrained ResNet-18; cfg/experiment/torchdistill/. Needs ImageNet and the teachers'
# weights:
#   scripts/reproduce_torchdistill.sh [--ray] [--dry-run] [--only GLOB] -- data.root=/path/to/ILSVRC2012
# (torchvision's resnet34-b627a593.pth / resnet18-f37072fd.pth in $TORCH_HOME/hub/checkpoints/, see the cells.)
# Each cell runs the process layout of its published log: most ran 3 processes (DDP on 3 GPUs, trainer.devices=3);
# on another number of GPUs N, pass trainer.devices=N and data.batch_size=<global batch>/N (the cells' headers give
# the global batch). PAD-L2 starts from the L2 cell's best checkpoint of the same seed (torchdistill's src_ckpt):
# the cells run in name order, L2 before PAD-L2, and this script passes it. SEEDS: one run per configuration, as
# torchdistill publishes. Tables: last and best epoch (the published numbers are the best epoch's), each cell
# against its published value (make_table.py --published).
PAPER=torchdistill
DEFAULT_SEEDS="0"
cell_args() {  # PAD-L2: student_init_checkpoint = the best checkpoint of the L2 run with the same seed
  case "$1" in
    torchdistill/pad_l2_*)
      if [ "$DRY" -eq 1 ]; then echo "student_init_checkpoint=<best.ckpt-of-the-l2-run-seed-$2>"; return; fi
      "$PYTHON" - "$OUT/distill" "$2" <<'PYEOF'
import json, sys
from pathlib import Path
for path in sorted(Path(sys.argv[1]).glob("*/record.json")):
    record = json.loads(path.read_text())
    if record["config"]["kd"]["name"] == "l2_embedding" and str(record["seed"]) == sys.argv[2]:
        print(f"student_init_checkpoint={record['checkpoints']['best']}")
        break
PYEOF
      ;;
  esac
}
make_tables() {
  local order=()
  if [ "$FULL" -eq 1 ]; then order=(--row-order kd,at,ft,crd,tfkd_self,sskd,l2_embedding,pad_l2_embedding,reviewkd,dist); fi
  table --rows kd.name --cols student.name "${order[@]}" --published --out "$OUT/table"
}
source "$(dirname "$0")/reproduce_common.sh"
