#!/usr/bin/env bash
# The GPU checks of issues #5 (speed) and #7 (accuracy) in one call of the device tool, which lends a
# task 15 minutes of device time, the machine's start included. From the repo root, on the GPU machine:
#
#     bash scripts/gpu_checks.sh                      # every step, in this order
#     bash scripts/gpu_checks.sh sweep ensemble       # only these
#
# Steps (each capped by `timeout`; one failing does not stop the next):
#   smoke     the default command for one epoch on the GPU, then src.evaluate on its checkpoint
#   bench     scripts/benchmark.py: lenet5 images/s at batch 32, 256 and 2048 (ours, bare Lightning, plain
#             loop, per-sample pipeline), time to 99.0% / 99.5%, start-up, host and GPU memory
#   sweep     time to 99.0% for fast.yaml and larger-batch variants of it: a GPU's step costs about the same at
#             any of these sizes, so fewer steps should win there (on the 2-core AMD EPYC, 2026-12-02: fast.yaml
#             360 steps, 8.5 s; batch 256 lr 0.02 1 epoch 180 steps, 8.4 s; batch 512 lr 0.02 2 epochs 140 steps,
#             25.6 s; batch 1024 lr 0.03 3 epochs never reached 99.0%)
#   ensemble  deep_bn_cnn, 3 seeds and their ensemble, with --tta (issue #7)
#   tests     (not in the default list) the end-to-end and resume tests, which then train on the GPU
#   plan      (not in the default list) benchmark_plan.py: every CNN in NCHW and NHWC, fp32 and bf16, on the GPU,
#             the evidence the hardware plan's memory-format rule lacks there (it keeps NCHW off x86-64 CPUs)
#
# Everything goes to $OUT (the device tool brings back at most 8 files): checks.log (all output),
# summary.md (the tables) and results.tgz (every run's results.json, config.yaml and evaluation metrics).
# Durations on an H200 are not measured yet: the caps below (575 s together) are guesses; expect about 6 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/gpu_checks}
RUNS=${RUNS:-/tmp/gpu_checks_runs}
mkdir -p "$OUT" "$RUNS"
export PYTHONUNBUFFERED=1
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(smoke bench sweep ensemble)

# step NAME SECONDS COMMAND...: run it under a cap, its output into checks.log and its tables into summary.md.
step() {
    local name=$1 cap=$2
    shift 2
    printf '\n== %s (cap %s s): %s\n' "$name" "$cap" "$*" | tee -a "$OUT/checks.log"
    local started=$SECONDS
    timeout "$cap" "$@" >"$RUNS/$name.log" 2>&1
    local status=$?
    cat "$RUNS/$name.log" >>"$OUT/checks.log"
    printf '\n## %s: exit %s after %s s\n\n`%s`\n\n' "$name" "$status" $((SECONDS - started)) "$*" >>"$OUT/summary.md"
    grep -E '^\||accuracy|images/s|^error' "$RUNS/$name.log" >>"$OUT/summary.md"
    tail -n 3 "$RUNS/$name.log"
    echo "exit $status after $((SECONDS - started)) s"
}

# fast.yaml at another batch size and learning rate, over `epochs` epochs of its one-cycle schedule.
variant() {
    local batch=$1 lr=$2 epochs=$3 file="$RUNS/fast_b$1_lr$2_e$3.yaml"
    "$PY" -c "import sys, yaml; r = yaml.safe_load(open('configs/fast.yaml')); \
r.update(batch_size=$batch, lr=$lr, max_epochs=$epochs); yaml.safe_dump(r, open(sys.argv[1], 'w'))" "$file"
    echo "$file"
}

{
    echo "# GPU checks, $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1
    "$PY" -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__, \
'cuda', torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'NO CUDA')"
    nproc
} 2>&1 | tee -a "$OUT/checks.log" >>"$OUT/summary.md"

for name in "${steps[@]}"; do
    case $name in
        smoke)
            step smoke 90 "$PY" -m src.train --model lenet5 --max-epochs 1 --logdir "$RUNS/smoke"
            step smoke-evaluate 45 "$PY" -m src.evaluate --ckpt "$RUNS/smoke/lenet5/version_0"
            ;;
        bench)
            step bench 150 "$PY" scripts/benchmark.py --rounds 3 --seconds 1.5 --batch-sizes 32 256 2048 --probe-steps 10 \
                --targets 0.99 0.995
            ;;
        sweep)
            step sweep 90 "$PY" scripts/benchmark.py --batch-sizes --probe-steps 5 --targets 0.99 --recipes \
                configs/fast.yaml "$(variant 256 0.02 1)" "$(variant 512 0.02 2)" "$(variant 512 0.04 2)"
            ;;
        ensemble)
            step ensemble 200 "$PY" scripts/train_ensemble.py --model deep_bn_cnn --members 3 --first-seed 0 --tta \
                --logdir "$RUNS/ensemble"
            ;;
        tests)
            step tests 300 "$PY" -m pytest -q -p no:cacheprovider tests/test_train.py tests/test_robustness.py
            ;;
        plan)
            step plan 240 "$PY" scripts/benchmark_plan.py --rounds 3
            ;;
        *) echo "unknown step $name; steps: smoke bench sweep ensemble tests plan" >&2 ;;
    esac
done

(cd "$RUNS" && find . \( -name results.json -o -name metrics.json -o -name '*.yaml' \) -print0 |
    tar -czf "$OUT/results.tgz" --null -T -)
echo
cat "$OUT/summary.md"
