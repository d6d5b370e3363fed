#!/usr/bin/env bash
# GPU check for one H100/H200 machine that has torch but not hydra/mlflow: installs the wheels
# from .whl/, then runs the gpu-marked tests, a short bench.compare on CUDA, the 2x2 sweep and
# the speedrun preset. Every step logs to $OUT/<step>.log and its exit code and
# duration to $OUT/summary.txt; a failing step never stops the ones after it.
# Budget: about 7 minutes in all (each step has its own timeout below).
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

# 1. Dependencies from the wheels carried in .whl/ (no index, no network), byte-compiled as a
#    normal install would be (so the timed runs below do not pay for compiling MLflow).
step install 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl
step compile 120 "$PY" -m compileall -q -j 0 /tmp/site
export PYTHONPATH="/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export CVSWEEP_DATA="$PWD/.devdata"
export PYTHONUNBUFFERED=1
export MLFLOW_DISABLE_TELEMETRY=true
echo "PYTHONPATH=$PYTHONPATH CVSWEEP_DATA=$CVSWEEP_DATA" >>"$SUMMARY"
ls -R "$CVSWEEP_DATA" >>"$OUT/machine.log" 2>&1 || true

# /usr/bin/time -v adds peak RSS and CPU seconds to the logs where it exists.
TIMER=()
[ -x /usr/bin/time ] && TIMER=(/usr/bin/time -v)

# 2. Start-up pieces: interpreter + torch, + CUDA context, MLflow, Hydra.
step import_torch 60 "$PY" -c 'import time; t=time.time(); import torch; a=time.time(); torch.zeros(1, device="cuda"); b=time.time(); torch.nn.functional.conv2d(torch.zeros(1,1,8,8,device="cuda"), torch.zeros(1,1,3,3,device="cuda")); torch.cuda.synchronize(); print(f"import torch {a-t:.2f} s, CUDA context {b-a:.2f} s, first conv {time.time()-b:.2f} s")'
step import_mlflow 60 "$PY" -c 'import time; t=time.time(); import mlflow.store.tracking.sqlalchemy_store; print(f"import mlflow + sqlalchemy store {time.time()-t:.2f} s")'

# 3. Where a step's time goes (graph alone, host work, kernels, the engine's loop).
for case in "optimizer=adam augment=none" "optimizer=sgd augment=none" "optimizer=adam augment=rot_flip"; do
    name="gpu_step_$(echo "$case" | tr ' =' '__')"
    # shellcheck disable=SC2086
    step "$name" 60 "$PY" -m bench.gpu_step --device cuda $(printf -- '--override %s ' $case) \
        --json "$OUT/$name.json"
done

# 4. The 2x2 sweep, 10 epochs each, timed: first against a fresh store (a user's first sweep),
#    then again against the same store (tracking.skip_finished=false so the jobs train again).
step sweep_2x2_fresh_store 150 ${TIMER[@]+"${TIMER[@]}"} "$PY" train.py -m optimizer=sgd,adam \
    augment=none,rot_flip trainer.epochs=10 trainer.progress=off \
    "tracking.uri=sqlite:///$OUT/mlflow.db" "hydra.sweep.dir=$OUT/multirun1"
step sweep_2x2_same_store 150 ${TIMER[@]+"${TIMER[@]}"} "$PY" train.py -m optimizer=sgd,adam \
    augment=none,rot_flip trainer.epochs=10 trainer.progress=off tracking.skip_finished=false \
    "tracking.uri=sqlite:///$OUT/mlflow.db" "hydra.sweep.dir=$OUT/multirun2"
grep -h "wall time" "$OUT"/sweep_2x2_*.log >>"$SUMMARY" 2>/dev/null || true

# 5. The gpu-marked tests (graph vs eager).
step pytest_gpu 120 "$PY" -m pytest -m gpu -q -p no:cacheprovider

# 6. The speedrun preset.
step speedrun 60 ${TIMER[@]+"${TIMER[@]}"} "$PY" train.py experiment=speedrun trainer.progress=off \
    "tracking.uri=sqlite:///$OUT/mlflow.db" "hydra.sweep.dir=$OUT/speedrun"

# 7. Reference vs cvsweep on CUDA, full epochs at batch 64.
step bench_compare_cuda 150 "$PY" -m bench.compare --device cuda --rounds 2 --epochs 1 \
    --train-limit 0 --batch-sizes 64 --augment none,rot_flip --num-workers 8 \
    --no-fixed-costs --json "$OUT/bench_compare_cuda.json"

echo "total ${SECONDS}s" | tee -a "$SUMMARY"
