#!/usr/bin/env bash
# GPU check for one H100/H200 machine that has torch but not hydra/mlflow: installs the wheels
# from .whl/, then runs the gpu-marked tests, a short bench.compare on CUDA, the 2x2 sweep and
# (if present) the speedrun preset. Every step logs to $OUT/<step>.log and its exit code and
# duration to $OUT/summary.txt; a failing step never stops the ones after it.
# Budget: about 8 minutes in all (each step has its own timeout below).
#
#   bash bench/gpu_check.sh            # from the repository root; OUT defaults to /tmp/gpu_check
set -u

cd "$(dirname "$0")/.." || exit 1
OUT="${OUT:-/tmp/gpu_check}"
mkdir -p "$OUT"
SUMMARY="$OUT/summary.txt"
: >"$SUMMARY"
PY="${PYTHON:-python3}"
T_START=$(date +%s)

# step NAME TIMEOUT_S CMD...: run CMD with a timeout, log it, record rc and seconds, carry on.
step() {
    local name="$1" limit="$2"
    shift 2
    local t0 rc
    t0=$(date +%s)
    echo "### $name: $*" | tee -a "$SUMMARY"
    timeout -k 10 "$limit" "$@" >"$OUT/$name.log" 2>&1
    rc=$?
    local secs=$(($(date +%s) - t0))
    [ "$rc" -eq 124 ] && echo "    (timed out after ${limit}s)" >>"$SUMMARY"
    echo "    rc=$rc  ${secs}s  (elapsed $(($(date +%s) - T_START))s)" | tee -a "$SUMMARY"
    tail -n 5 "$OUT/$name.log" | sed 's/^/    | /' >>"$SUMMARY"
    return 0
}

# 0. Machine facts.
{
    date -u
    nvidia-smi || true
    "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
      "available", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' || true
    nproc
} >"$OUT/machine.log" 2>&1

# 1. Dependencies from the wheels carried in .whl/ (no index, no network).
step install 90 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH="/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export CVSWEEP_DATA="$PWD/.devdata"
export PYTHONUNBUFFERED=1
echo "PYTHONPATH=$PYTHONPATH CVSWEEP_DATA=$CVSWEEP_DATA" >>"$SUMMARY"
ls -R "$CVSWEEP_DATA" >>"$OUT/machine.log" 2>&1 || true

# 2. The gpu-marked tests.
step pytest_gpu 90 "$PY" -m pytest -m gpu -q -p no:cacheprovider

# 3. Reference vs cvsweep on CUDA, short: 2 rounds, 20000 images per epoch.
step bench_compare_cuda 180 "$PY" -m bench.compare --device cuda --rounds 2 --epochs 1 \
    --train-limit 20000 --batch-sizes 16,64,256 --augment none,rot_flip --num-workers 4 \
    --fixed-rounds 1 --json "$OUT/bench_compare_cuda.json"

# /usr/bin/time -v adds peak RSS and CPU seconds to the logs where it exists.
TIMER=()
[ -x /usr/bin/time ] && TIMER=(/usr/bin/time -v)

# 4. The 2x2 sweep, 10 epochs each, timed. MLflow goes to a store under $OUT when it imports.
SWEEP_TRACKING=(tracking.enabled=false)
if "$PY" -c 'import mlflow' >/dev/null 2>&1; then
    SWEEP_TRACKING=("tracking.uri=sqlite:///$OUT/mlflow.db")
fi
step sweep_2x2 150 ${TIMER[@]+"${TIMER[@]}"} "$PY" train.py -m optimizer=sgd,adam augment=none,rot_flip \
    trainer.epochs=10 trainer.progress=off "${SWEEP_TRACKING[@]}" \
    "hydra.sweep.dir=$OUT/multirun"

# 5. The speedrun preset, when the project has one.
if [ -f conf/experiment/speedrun.yaml ]; then
    step speedrun 60 ${TIMER[@]+"${TIMER[@]}"} "$PY" train.py experiment=speedrun trainer.progress=off \
        "${SWEEP_TRACKING[@]}" "hydra.run.dir=$OUT/speedrun"
else
    echo "### speedrun: skipped (no conf/experiment/speedrun.yaml)" | tee -a "$SUMMARY"
fi

echo "total ${SECONDS}s" | tee -a "$SUMMARY"
