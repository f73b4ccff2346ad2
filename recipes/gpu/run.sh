#!/usr/bin/env bash
# The GPU check in one call of the device tool (recipes/gpu/README.md has the call to paste): install the carried
# wheels, check the machine, then measure SPO against DPO and precomputed-reference DPO in bf16 at Qwen2-0.5B's shape
# with 1,024-token sequences. Everything stops by GPU_CHECK_BUDGET_S seconds (default 330), installs included.
#
#   bash recipes/gpu/run.sh                                  # from the repository's root, on the lent machine
#   GPU_CHECK_BUDGET_S=200 bash recipes/gpu/run.sh --generation-interval 4 --measure-steps 4 --warmup-steps 1
#
# 2 warm-up steps, then 8 measured steps (one refresh of SPO's KL samples); arguments go to the benchmark after these
# and override them (`python -m benchmarks.step_cost --help`). Results go to $OUT (the device tool sets it;
# /tmp/gpu-check otherwise): log.txt, environment.json, step_cost_gpu.json, step_cost_gpu.md.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/gpu-check}"
BUDGET_S="${GPU_CHECK_BUDGET_S:-330}"
SITE="${GPU_CHECK_SITE:-/tmp/site}"
# For a rehearsal on a CPU (recipes/gpu/README.md): another wheel folder, and no GPU required.
WHEEL_DIR="${GPU_CHECK_WHEELS:-.whl}"
REQUIRE_CUDA=(--require-cuda)
[ "${GPU_CHECK_REQUIRE_CUDA:-1}" = 0 ] && REQUIRE_CUDA=()
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$OUT"
LOG="$OUT/log.txt"
log() { echo "[run.sh ${SECONDS} s] $*" | tee -a "$LOG"; }

log "budget ${BUDGET_S} s; $(uname -m), $(nproc) CPUs, $(python3 --version 2>&1) at $(command -v python3)"
timeout 20 nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv 2>&1 | tee -a "$LOG" \
    || log "nvidia-smi failed or is missing (the environment check below decides)"

shopt -s nullglob
wheels=("$WHEEL_DIR"/*.whl)
if [ ${#wheels[@]} -eq 0 ]; then
    log "FAILED: no wheels in $WHEEL_DIR/: run \`python recipes/gpu/fetch_wheels.py\` on the development machine and name .whl in the call's carry list"
    exit 2
fi
log "installing ${#wheels[@]} wheels into $SITE: ${wheels[*]}"
if ! timeout 120 python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" "${wheels[@]}" 2>&1 | tee -a "$LOG"; then
    log "FAILED: pip install of the carried wheels (see above)"
    exit 3
fi
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}"

left=$((BUDGET_S - SECONDS - 5))
if [ "$left" -lt 60 ]; then
    log "FAILED: only ${left} s left of the budget after the install"
    exit 4
fi
log "environment check, then the benchmark; ${left} s left"
# SIGTERM at the budget, SIGKILL 5 s later; the watchdog prints every Python stack 20 s before, so a hang shows where.
timeout --kill-after=5 "$left" python3 recipes/gpu/gpu_check.py --out "$OUT" "${REQUIRE_CUDA[@]}" \
    --watchdog-s $((left - 20)) --warmup-steps 2 --measure-steps 8 "$@" 2>&1 | tee -a "$LOG"
rc=${PIPESTATUS[0]}
case $rc in
    0) log "done" ;;
    124 | 137) log "TIMED OUT after ${SECONDS} s: step_cost_gpu.json holds the trainers measured so far (\"complete\": false)" ;;
    *) log "FAILED with exit code $rc (see above; environment.json says what the check found)" ;;
esac
ls -l "$OUT" | tee -a "$LOG"
exit "$rc"
