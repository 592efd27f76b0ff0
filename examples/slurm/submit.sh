#!/bin/bash
# submit.sh - scores INPUTs on a Slurm cluster: a job array of N tasks
# (clipscore-array.sbatch, each scoring its share with --shard slurm), then a
# merge job (clipscore-merge.sbatch) that starts when every task succeeded.
#
#   submit.sh N OUT INPUT... [clipscore score options]
#
#   examples/slurm/submit.sh 16 run1 shards/{00000..00255}.tar --model ViT-B/32 --keep-fraction 0.3
#
# OUT (on storage every node sees) receives parts/part-00000..., logs/ (one
# log per task, with every attempt of a requeued task, and the merge's), then
# output.csv and run.json (kept.csv with --keep-threshold/--keep-fraction,
# which are passed to the merge too, so a fraction is taken over all parts).
# Prints the two job ids. Site options go in the .sbatch files' #SBATCH lines,
# in SBATCH_* variables, or in SBATCH_ARGS (extra sbatch options for both
# jobs, split on spaces). $CLIPSCORE names the program [clipscore].
#
# Fetch the model once before, into a cache the nodes share:
#   CLIPSCORE_CACHE=/shared/clipscore-cache clipscore models fetch ViT-B/32
# (CLIPSCORE_CACHE, like every variable here, reaches the jobs: sbatch
# exports the environment by default.)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ $# -lt 3 ] || ! [ "$1" -ge 1 ] 2>/dev/null; then
    echo "usage: submit.sh N OUT INPUT... [clipscore score options]" >&2
    exit 2
fi
n=$1 out=$2
shift 2
# The keep options apply to the whole run, so the merge gets them too.
merge_opts=()
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    case ${args[i]} in
    --keep-threshold | --keep-fraction) merge_opts+=("${args[i]}" "${args[i + 1]:-}") ;;
    --keep-threshold=* | --keep-fraction=*) merge_opts+=("${args[i]}") ;;
    esac
done
mkdir -p "$out/logs"
out=$(cd "$out" && pwd) # the jobs may start in another folder
# shellcheck disable=SC2086 # SBATCH_ARGS is a list of options
array=$(sbatch --parsable ${SBATCH_ARGS:-} --array="0-$((n - 1))" --output="$out/logs/%A_%a.log" \
    "$here/clipscore-array.sbatch" "$out" "$@")
array=${array%%;*}
# shellcheck disable=SC2086
merge=$(sbatch --parsable ${SBATCH_ARGS:-} --dependency="afterok:$array" --kill-on-invalid-dep=yes \
    --output="$out/logs/merge-%j.log" "$here/clipscore-merge.sbatch" "$out" "${merge_opts[@]}")
merge=${merge%%;*}
echo "array job $array ($n tasks), merge job $merge; logs in $out/logs"
