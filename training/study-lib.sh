# Sourced by the study scripts (recipe-x8.sh, ablation-x64.sh): the data, one CPU thread per run, and how an arm
# is scored - its OUT/final on the first VAL_LIMIT faces/val images at bits 1, seed 0, with the evaluate CLI.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."  # the repository root
VAL_LIMIT=${VAL_LIMIT:-50}
DATA=${DATA:-../shared/data/faces}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

score() {  # OUT TAU: writes OUT/val$VAL_LIMIT.json and .csv
  python -m bdflow.evaluate --checkpoint "$1/final" --data "$DATA/val" --limit "$VAL_LIMIT" \
    --bits 1 --tau "$2" --seed 0 --json "$1/val$VAL_LIMIT.json" --csv "$1/val$VAL_LIMIT.csv"
}
