#!/usr/bin/env bash
# One prepared device session (a GPU machine lent for a few minutes): GPU correctness tests, the GPU
# benchmarks the issues ask for, and the capture overhead on a quiet CPU restricted to 2 threads.
# Peers missing on that machine (captum, grad-cam, ttach, shap, slicer, lime; its image has numba,
# scikit-image, scikit-learn and pandas) travel as wheels in the ignored .whl/ (1.9 MB), made here with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#     captum==0.9.0 grad-cam==1.5.7 ttach==0.0.3 shap==0.51.0 slicer==0.0.8
#   pip wheel --no-deps -w .whl lime==0.2.0.1        # lime is published as a source archive only
# and carried by the call: run(command="bash benchmarks/gpu_session.sh", carry=[".whl"], timeout_s=600).
set -u
export PYTHONUNBUFFERED=1 MPLBACKEND=Agg
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD/src
else
  export PYTHONPATH=$PWD/src
fi
out=${OUT:-/tmp/out}
mkdir -p "$out"
{
  nvidia-smi -L; lscpu | grep -E "Model name|^CPU\(s\)"
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
  echo "== GPU correctness"
  timeout 90 python3 -m pytest -q -p no:cacheprovider -o filterwarnings=ignore tests/gpu
  echo "== capture overhead, cuda, resnet50 batch 64"
  timeout 90 python3 benchmarks/capture_overhead.py --device cuda --model resnet50 --batch 64 --repeats 10
  echo "== explain vs peers, cuda, resnet50 batch 64"
  timeout 130 python3 benchmarks/explain_vs_peers.py --device cuda --model resnet50 --batch 64 --skip-perturbation --profile
  echo "== monitor overhead, cuda, resnet50 batch 64"
  timeout 120 python3 benchmarks/monitor_overhead.py --device cuda --model resnet50 --batch 64 \
    --variants bare,watch,watch_nonan,watch_all,tb_histograms,item_recipe
  if python3 -c "import shap, lime" 2>/dev/null; then  # their wheels (and numba's, for shap) in .whl/
    echo "== perturbation methods vs shap and lime, cuda"
    timeout 100 python3 benchmarks/explain_perturbation_vs_peers.py --device cuda --samples 1000 --repeats 3
  fi
  echo "== capture overhead, quiet CPU, 2 threads"
  OMP_NUM_THREADS=2 timeout 60 taskset -c 0,1 python3 benchmarks/capture_overhead.py --repeats 5
} 2>&1 | tee "$out/gpu_session.log"
