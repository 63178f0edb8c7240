#!/usr/bin/env bash
# seqrec training on a CUDA GPU: the same bench_train runs as on the CPU, on a bare GPU
# machine that has torch, numpy and tqdm but not this project's index stack (Chroma, the
# text encoder). Item text embeddings come from files this machine wrote first:
#
#   # here (CPU): copy the datasets and save the index's embeddings, with the CPU baselines
#   python -m recagent.evals.bench_train --data ../shared/data/ml-100k ... \
#       --save-embeddings PREP/emb-ml-100k.npz
#   # (likewise emb-amazon.npz, emb-demo-40000x3000.npz, emb-demo-200000x30000.npz;
#   #  PREP/data/ holds copies of ml-100k and amazon-scientific)
#   # there (GPU), from the repository root, with recagent importable:
#   bash evals/bench_train_gpu.sh PREP OUT
#
# Each run is capped in minutes; the whole script took about 10 minutes on an H200 machine
# (generating the 300,000-user shop on its CPU is a good part of that). DEVICE=cpu
# runs the same commands here (a dry run).
set -euo pipefail
prep=${1:?usage: bench_train_gpu.sh PREP_DIR OUT_DIR}
out=${2:?usage: bench_train_gpu.sh PREP_DIR OUT_DIR}
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
mkdir -p "$out"
bench() { "$py" -m recagent.evals.bench_train --device "$device" "$@"; }

nvidia-smi -L || true
"$py" -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no CUDA device')"

# Real data, with the README's train-retriever settings (fp32; early stopping after 15
# epochs without a better validation NDCG@10), to compare time and the model it reaches.
bench --data "$prep/data/ml-100k" --embeddings "$prep/emb-ml-100k.npz" \
    --variants full-fp32,full-bf16 --epochs 200 --patience 15 --max-minutes 0.75 \
    --out "$out/gpu-ml-100k.json"
bench --data "$prep/data/amazon-scientific" --embeddings "$prep/emb-amazon.npz" \
    --variants full-fp32 --lr 3e-3 --schedule cosine --epochs 70 --patience 15 --max-minutes 1.5 \
    --out "$out/gpu-amazon-scientific.json"
# The scale demo shops. Their items do not depend on the number of users, so the 3,000-item
# embeddings serve 300,000 users; s/step compares with the CPU's demo:40000x3000 table.
bench --data demo:300000x3000 --embeddings "$prep/emb-demo-40000x3000.npz" \
    --variants full-bf16,sampled-bf16 --negatives 1024 --epochs 1 --max-minutes 0.75 \
    --valid-cases 10000 --out "$out/gpu-demo-300000x3000.json"
bench --data demo:200000x30000 --embeddings "$prep/emb-demo-200000x30000.npz" \
    --variants full-bf16,sampled-bf16 --negatives 1024 --epochs 1 --max-minutes 0.4 \
    --valid-cases 10000 --out "$out/gpu-demo-200000x30000.json"
