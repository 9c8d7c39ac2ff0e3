#!/usr/bin/env bash
# The GPU benchmarks of issue 11 in one call: rollout and training throughput with a
# Qwen2-0.5B-shaped model (random init, tiny tokenizer, bf16 static-cache generation),
# arena against plain TRL, each part under its own time limit.
#
#   bash scripts/gpu_bench.sh prepare   # here, with network: arena's wheel and the pure-Python
#                                       # packages a bare GPU machine lacks, into .whl/
#   bash scripts/gpu_bench.sh run       # on the GPU machine (no network): install .whl/ into
#                                       # /tmp/site, run both benchmarks, JSON and logs to $OUT
#   bash scripts/gpu_bench.sh cuda-tests  # there too: tests/test_cuda.py (the CUDA path end to
#                                         # end: compiled static cache, a run, its resume; ~2 min),
#                                         # with MEMORY=1 then scripts/bench_memory.py on the GPU
#   bash scripts/gpu_bench.sh all       # there: cuda-tests, then run, in one call of at most
#                                       # ~550 s (a session's device time is 15 minutes, machine
#                                       # start included: one call, run(..., timeout_s=600))
#
# The wheels are checked against the source tree (`.whl/SOURCE`, a hash `prepare` writes):
# a tree changed since `prepare` is refused rather than benchmarked as it was. After the
# install, the imports every part needs are tried at once (GRPOTrainer, datasets, arena's
# trainer), so a missing or clashing package fails in seconds, not after the rollout.
#
# `run` assumes a machine with CUDA torch, transformers, accelerate, peft, pyarrow, rich,
# typer and matplotlib installed (an ML image) and nothing from the package registries.
# Limits (seconds) through ROLLOUT_S and TRAIN_S; results in $OUT (default ./gpu-bench).
# SMOKE=1 runs the same two commands with the tiny model on CPU and small sizes: a check,
# on any machine, that the wheels install and the scripts run (a minute or two).
set -uo pipefail
cd "$(dirname "$0")/.."
mode=${1:-run}
WHEELS=.whl
# a hash of what arena's wheel is built from (its packages' files and pyproject.toml)
source_hash() {
    python3 - <<'PY'
import hashlib
from pathlib import Path
h = hashlib.sha256()
files = [Path("pyproject.toml")] + sorted(p for d in ("arena", "agents", "envs", "sandbox") for p in Path(d).rglob("*")
                                          if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
for p in files:
    h.update(str(p).encode() + b"\0" + p.read_bytes() + b"\0")
print(h.hexdigest())
PY
}

if [[ $mode == prepare ]]; then
    set -e
    rm -rf "$WHEELS" && mkdir -p "$WHEELS"
    python3 -m pip wheel -q --no-deps --no-build-isolation -w "$WHEELS" .
    # what an ML image without them needs for arena + TRL (versions: pyproject.toml's pins
    # and what this machine resolved); --no-deps: each is named
    pkgs=()
    for name in trl datasets dill multiprocess gymnasium farama-notifications pettingzoo docker \
            pytest pluggy iniconfig; do
        version=$(python3 -m pip show "$name" 2>/dev/null | sed -n 's/^Version: //p')
        pkgs+=("$name${version:+==$version}")
    done
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$WHEELS" "${pkgs[@]}"
    source_hash > "$WHEELS/SOURCE"
    ls -la "$WHEELS"
    du -sh "$WHEELS"
    exit 0
fi
[[ $mode == run || $mode == cuda-tests || $mode == all ]] || {
    echo "usage: bash scripts/gpu_bench.sh prepare|run|cuda-tests|all" >&2; exit 2; }
if [[ -f $WHEELS/SOURCE && $(source_hash) != $(cat "$WHEELS/SOURCE") ]]; then
    echo "the source tree changed since 'bash scripts/gpu_bench.sh prepare' built $WHEELS: run prepare again" >&2
    exit 1
fi

OUT=${OUT:-gpu-bench}
mkdir -p "$OUT"
if ! compgen -G "$WHEELS/*.whl" > /dev/null && ! python3 -c "import trl, datasets, arena" 2> /dev/null; then
    echo "no wheels in $WHEELS and no trl/datasets/arena here: run 'bash scripts/gpu_bench.sh prepare' first, and" \
         "carry .whl to the GPU machine (run(..., carry=[\".whl\"]))" >&2
    exit 1
fi
if compgen -G "$WHEELS/*.whl" > /dev/null; then
    # the wheels this interpreter can install (prepare targets the GPU machine's Python 3.12;
    # a SMOKE run elsewhere skips what is built for another Python, with a word)
    mapfile -t fit < <(python3 - "$WHEELS" <<'PY'
import sys
from pathlib import Path
from packaging.tags import sys_tags
from packaging.utils import parse_wheel_filename
ours = set(sys_tags())
for wheel in sorted(Path(sys.argv[1]).glob("*.whl")):
    if ours & set(parse_wheel_filename(wheel.name)[3]):
        print(wheel)
    else:
        print(f"skipping {wheel.name}: built for another Python than this one", file=sys.stderr)
PY
)
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "${fit[@]}" || exit 1
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false ARENA_CACHE=${ARENA_CACHE:-/tmp/arena-cache}
{
    command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    (cd /tmp && python3 -c "import torch, transformers, trl, arena; print('torch', torch.__version__, 'transformers', transformers.__version__, 'trl', trl.__version__, 'arena', arena.__file__)")
    python3 -m pip list 2> /dev/null | grep -i -E "^(accelerate|datasets|fsspec|peft|pyarrow|rich|typer|matplotlib|pytest) "
} 2>&1 | tee "$OUT/versions.txt"
# every import the parts need, now: a package missing or clashing with the image's fails in seconds
(cd /tmp && python3 -c "
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer
Dataset.from_dict({'prompt': ['a']})
import arena.registry, arena.trainer, arena.agents.hf, gymnasium, pettingzoo
print('imports: ok')") 2>&1 | tee -a "$OUT/versions.txt"
[[ ${PIPESTATUS[0]} == 0 ]] || { echo "an import failed (above): nothing was benchmarked" >&2; exit 1; }

status=0
if [[ $mode == cuda-tests || $mode == all ]]; then
    # from /tmp, so that `arena` is the installed wheel (the source tree's folders map into it);
    # the image's own pytest plugins stay out of the pytest shipped in .whl
    repo=$PWD
    [[ $mode == all ]] && : "${TESTS_S:=150}"
    (cd /tmp && PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 timeout "${TESTS_S:-300}" python3 -m pytest -q -p no:cacheprovider \
        -c "$repo/pyproject.toml" --rootdir "$repo" "$repo/tests/test_cuda.py") 2>&1 | tee "$OUT/cuda-tests.log"
    status=${PIPESTATUS[0]}
    # MEMORY=1: then the generation copy's memory on the GPU (the CUDA allocator's peak; 10
    # fresh processes, 1-2 minutes: opt-in, as the device time of a session is short)
    if [[ ${MEMORY:-0} == 1 ]]; then
        shape=(--device cuda); [[ ${SMOKE:-0} == 1 ]] && shape=(--device cpu --model-config tiny)
        timeout "${MEMORY_S:-150}" python3 scripts/bench_memory.py "${shape[@]}" --out "$OUT/bench_memory_gpu.json" \
            2>&1 | tee "$OUT/memory.log" || status=1
    fi
    [[ $mode == cuda-tests ]] && exit "$status"
    : "${ROLLOUT_S:=170}" "${TRAIN_S:=210}"  # all: the benchmarks in what is left of one call
fi
if [[ ${SMOKE:-0} == 1 ]]; then
    model=(--model-config tiny --device cpu --threads 1); rollout=(--concurrency 1,8 --episodes 16 --repeats 1)
    train=(--prompts 4 --generations 4 --length 16 --steps 1 --warmup 1 --rounds 1 --order trl,arena,arena-unshared)
else
    model=(--model-config qwen2-0.5b --device cuda); rollout=(--concurrency 1,8,64 --episodes 256 --repeats 1)
    # arena-unshared last (its row is kept if the limit cuts it): generation without prompt
    # sharing, so that its generation ratio is the static cache's alone
    train=(--prompts 64 --generations 8 --length 128 --steps 2 --warmup 1 --rounds 1 --order trl,arena,arena-unshared)
fi
# rollout: Kuhn Poker self-play at 1, 8 and 64 episodes in flight, with the shared context
# prefilled once (hf) and without (hf-plain); each cell warmed up first: the static cache
# compiles once per batch and width bucket
timeout "${ROLLOUT_S:-270}" python3 scripts/bench_rollout.py "${model[@]}" --backends hf,hf-plain --env spiral/KuhnPoker-v0 \
    "${rollout[@]}" --out "$OUT/bench_rollout_gpu.json" 2>&1 | tee "$OUT/rollout.log" || status=1
# one training step, arena vs plain TRL: 64 prompts x 8 completions of 128 tokens
timeout "${TRAIN_S:-270}" python3 scripts/bench_train.py "${model[@]}" "${train[@]}" --out "$OUT/bench_train_gpu.json" \
    2>&1 | tee "$OUT/train.log" || status=1
exit $status
