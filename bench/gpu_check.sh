#!/usr/bin/env bash
# GPU check for one H100/H200 machine that has torch but not hydra/mlflow: installs the wheels
# from .whl/, then runs the gpu-marked tests, where a step's time goes (bench.gpu_step), the
# 2x2 sweep, the speedrun preset and a short bench.compare on CUDA. Every step logs to
# $WORK/logs/<step>.log and its exit code and duration to the summary; a failing step never
# stops the ones after it. What comes back is small: $OUT/report.txt (the summary and the
# tail of every log) and $OUT/gpu_step.json. Budget: about 5 minutes for the default steps.
#
#   bash bench/gpu_check.sh            # from the repository root; OUT defaults to /tmp/gpu_check
#   STEPS="profile sweep" bash bench/gpu_check.sh   # only some steps (install always runs)
#
# Steps: pytest startup gpu_step sweep timeline speedrun compare (the default); profile_run
# and profile_sweep (a single run and a short sweep under cProfile; profile names both);
# split_off (the step and the sweep with trainer.split_bias_grad=off, for comparison); joblib
# (the sweep under Hydra's joblib launcher, 2 and 4 jobs at once).
set -u

cd "$(dirname "$0")/.." || exit 1
OUT="${OUT:-/tmp/gpu_check}"
WORK="${WORK:-/tmp/gpu_check_work}"  # stores, sweep folders, logs: many files, kept out of $OUT
mkdir -p "$OUT" "$WORK/logs"
SUMMARY="$WORK/logs/00_summary.txt"
: >"$SUMMARY"
PY="${PYTHON:-python3}"
STEPS=" ${STEPS:-pytest startup gpu_step sweep timeline speedrun compare} "
want() { [[ "$STEPS" == *" $1 "* ]]; }
T_START=$(date +%s)

# step NAME TIMEOUT_S CMD...: run CMD with a timeout, log it, record rc and seconds, carry on.
step() {
    local name="$1" limit="$2"
    shift 2
    local t0 rc
    t0=$(date +%s%N)
    echo "### $name: $*" >>"$SUMMARY"
    timeout -k 10 "$limit" "$@" >"$WORK/logs/$name.log" 2>&1
    rc=$?
    local ms=$((($(date +%s%N) - t0) / 1000000))
    [ "$rc" -eq 124 ] && echo "    (timed out after ${limit}s)" >>"$SUMMARY"
    echo "    rc=$rc  $((ms / 1000)).$(printf %03d $((ms % 1000)))s  (elapsed $(($(date +%s) - T_START))s)" >>"$SUMMARY"
    return 0
}

finish() {
    {
        cat "$SUMMARY"
        echo
        grep -H -E "wall time|sweep:|Elapsed|Maximum resident|passed|failed|rror|import |ratio|\*\*" \
            "$WORK"/logs/*.log | sed "s#$WORK/logs/##"
        for f in "$WORK"/logs/*.log; do
            echo
            lines=80
            [[ "$(basename "$f")" == profile_* || "$(basename "$f")" == timeline_* ]] && lines=150
            echo "======== $(basename "$f") (last $lines lines)"
            grep -v "^| \|^Shape report\|^$" "$f" | tail -n "$lines"
        done
    } >"$OUT/report.txt"
    "$PY" -c 'import json, pathlib, sys; print(json.dumps({p.stem: json.loads(p.read_text()) for p in sorted(pathlib.Path(sys.argv[1]).glob("*.json"))}, indent=1))' \
        "$WORK" >"$OUT/gpu_step.json" 2>/dev/null || true
}
trap finish EXIT
trap 'exit 143' TERM INT

# 0. Machine facts.
{
    date -u
    nvidia-smi || true
    "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda,
      "available", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")' || true
    nproc
    echo "PYTHONDONTWRITEBYTECODE=${PYTHONDONTWRITEBYTECODE-unset}"
    "$PY" -c 'import os, torch; d = os.path.dirname(torch.__file__); print("torch dir", d, "writable", os.access(d, os.W_OK), "pyc in torch/__pycache__", len(os.listdir(os.path.join(d, "__pycache__"))) if os.path.isdir(os.path.join(d, "__pycache__")) else 0)' || true
} >"$WORK/logs/machine.log" 2>&1

# Bytecode is written beside the sources, or under /tmp/pycache where torch's are read-only; set
# before anything is compiled, so the compile step below writes where later imports look.
unset PYTHONDONTWRITEBYTECODE
if ! "$PY" -c 'import os, sys, torch; sys.exit(0 if os.access(os.path.dirname(torch.__file__), os.W_OK) else 1)'; then
    export PYTHONPYCACHEPREFIX=/tmp/pycache
fi

# 1. Dependencies from the wheels carried in .whl/ (no index, no network), byte-compiled as a
#    normal install would be (so the timed runs below do not pay for compiling MLflow).
step install 120 "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --upgrade --target /tmp/site .whl/*.whl
step compile 120 "$PY" -m compileall -q -j 0 /tmp/site
export PYTHONPATH="/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

# 1b. Byte-compiled modules, as a user's `pip install` leaves them. A machine image may turn
#     bytecode writing off (PYTHONDONTWRITEBYTECODE) or ship torch read-only: then every process
#     compiles torch's Python again (measured: 4.2 s per process on a lent H200). Bytecode is
#     written (see the top) by one import of everything a run uses, before anything is timed.
step bytecode 120 "$PY" -c 'import torch, torch._dynamo, torch.optim, matplotlib.pyplot, hydra, mlflow, sqlalchemy, cvsweep.job, cvsweep.sweep, cvsweep.store_worker, cvsweep.compare, cvsweep.plots, cvsweep.cli, bench.compare, bench.timeline, joblib, hydra_plugins.hydra_joblib_launcher.joblib_launcher'
export CVSWEEP_DATA="$PWD/.devdata"
export PYTHONUNBUFFERED=1
export MLFLOW_DISABLE_TELEMETRY=true

TIMER=()
[ -x /usr/bin/time ] && TIMER=(/usr/bin/time -v)

# 2. The gpu-marked tests (graph vs eager).
want pytest && step pytest_gpu 240 "$PY" -m pytest -m gpu -q -p no:cacheprovider -x

# 3. Start-up pieces: interpreter + torch, CUDA context, first convolution, MLflow.
want startup && step import_torch 60 "$PY" -c 'import time; t=time.time(); import torch; a=time.time(); torch.zeros(1, device="cuda"); b=time.time(); torch.nn.functional.conv2d(torch.zeros(1,1,8,8,device="cuda"), torch.zeros(1,1,3,3,device="cuda")); torch.cuda.synchronize(); print(f"import torch {a-t:.2f} s, CUDA context {b-a:.2f} s, first conv {time.time()-b:.2f} s")'
want startup && step import_mlflow 60 "$PY" -c 'import time; t=time.time(); import mlflow.store.tracking.sqlalchemy_store; print(f"import mlflow + sqlalchemy store {time.time()-t:.2f} s")'

# 4. Where a step's time goes (graph alone, host work, kernels, the engine's loop).
gpu_step() {
    local name="$1"
    shift
    step "gpu_step_$name" 60 "$PY" -m bench.gpu_step --device cuda "$@" --json "$WORK/gpu_step_$name.json"
}
if want gpu_step; then
    gpu_step adam_none --override optimizer=adam
    gpu_step sgd_none --override optimizer=sgd
    gpu_step adam_rot_flip --override optimizer=adam --override augment=rot_flip
fi
want split_off && gpu_step adam_none_split_off --override optimizer=adam \
    --override trainer.split_bias_grad=off

# 4b. The first job's one-time costs: one short run, then a short 2x2 sweep, under cProfile.
if want profile || want profile_run; then
    step profile_run 90 "$PY" -m bench.profile --top 45 -- train.py trainer.epochs=1 \
        trainer.progress=off "tracking.uri=sqlite:///$WORK/profile.db" "hydra.run.dir=$WORK/profile_run"
fi
if want profile || want profile_sweep; then
    step profile_sweep 120 "$PY" -m bench.profile --top 45 -- train.py -m optimizer=sgd,adam \
        augment=none,rot_flip trainer.epochs=1 trainer.progress=off \
        "tracking.uri=sqlite:///$WORK/profile_sweep.db" "hydra.sweep.dir=$WORK/profile_sweep"
fi

# 5. The 2x2 sweep, 10 epochs each, timed: against a fresh store (a user's first sweep), then
#    against the same store (tracking.skip_finished=false so the jobs train again).
SWEEP=(train.py -m optimizer=sgd,adam augment=none,rot_flip trainer.epochs=10 trainer.progress=off)
want sweep && step sweep_2x2_fresh_store 150 ${TIMER[@]+"${TIMER[@]}"} "$PY" "${SWEEP[@]}" \
    "tracking.uri=sqlite:///$WORK/mlflow.db" "hydra.sweep.dir=$WORK/multirun1"
want sweep && step sweep_2x2_same_store 150 ${TIMER[@]+"${TIMER[@]}"} "$PY" "${SWEEP[@]}" \
    tracking.skip_finished=false "tracking.uri=sqlite:///$WORK/mlflow.db" \
    "hydra.sweep.dir=$WORK/multirun2"
# 5b. The same sweep under bench.timeline (a new store): when each part ran, so the wall
#     clock beyond the epochs is explained part by part. Its table ends the log.
want timeline && step timeline_sweep_2x2 150 "$PY" -m bench.timeline -- "${SWEEP[@]}" \
    "tracking.uri=sqlite:///$WORK/timeline.db" "hydra.sweep.dir=$WORK/multirun_timeline"
# 5c. Hydra's joblib launcher: the jobs' processes start, import and compose side by side, and
#     share the GPU (time-sliced between processes, not overlapped, without MPS).
for n in 2 4; do
    want joblib && step "sweep_2x2_joblib$n" 150 ${TIMER[@]+"${TIMER[@]}"} "$PY" "${SWEEP[@]}" \
        hydra/launcher=joblib "hydra.launcher.n_jobs=$n" \
        "tracking.uri=sqlite:///$WORK/joblib$n.db" "hydra.sweep.dir=$WORK/multirun_joblib$n"
done
want split_off && step sweep_2x2_same_store_split_off 150 ${TIMER[@]+"${TIMER[@]}"} "$PY" \
    "${SWEEP[@]}" tracking.skip_finished=false trainer.split_bias_grad=off \
    "tracking.uri=sqlite:///$WORK/mlflow.db" "hydra.sweep.dir=$WORK/multirun3"

# 6. The speedrun preset.
want speedrun && step speedrun 60 ${TIMER[@]+"${TIMER[@]}"} "$PY" train.py experiment=speedrun trainer.progress=off \
    "tracking.uri=sqlite:///$WORK/mlflow.db" "hydra.sweep.dir=$WORK/speedrun"

# 7. Reference vs cvsweep on CUDA, full epochs at batch 64.
want compare && step bench_compare_cuda 150 "$PY" -m bench.compare --device cuda --rounds 2 --epochs 1 \
    --train-limit 0 --batch-sizes 64 --augment none,rot_flip --num-workers 8 \
    --no-fixed-costs --json "$WORK/bench_compare_cuda.json"

echo "total $(($(date +%s) - T_START))s" >>"$SUMMARY"
