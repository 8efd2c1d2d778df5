#!/usr/bin/env bash
# The GPU checks of issues 8 (MiniLM + MSLM) and 9 (fewshot_ner at SmolLM2's and a 1 B shape),
# as one bounded run on a lent GPU machine (see ../shared/docs/GPU.md). Prepare here first:
#   bash ../shared/tools/gpu/prepare.sh blurb/NCBI-disease-IOB crossner/politics pubmed
#       # it keeps only spacy/lang/{en,xx}, but spaCy 3.8.18 imports lang/{ja,ko,th,vi,zh} when it
#       # fills its registry: copy those five folders back into .gpu/site.tar.xz
#   (cd <folder holding minilm-mlm/> && tar cf - minilm-mlm | xz -9e) > .gpu/minilm-mlm.tar.xz
#       # minilm-mlm: training/base of `spacy project run base` (MiniLM + warmed MLM head),
#       # its model.safetensors stored in bf16 as model.bf16.safetensors to fit the 64 MiB carry
#   tar cf - -C assets/models smollm2-135m-instruct/{config.json,tokenizer.json,tokenizer_config.json,special_tokens_map.json,chat_template.jinja,generation_config.json} | xz > .gpu/smollm2-tok.tar.xz
# then run with carry [".gpu"]: `source .gpu/env.sh && bash benchmarks/gpu_checks.sh`.
# Every stage is bounded with `timeout` (about 420 s in all) and its figures land in $OUT as soon
# as they exist.
set -u
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
T0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$OUT/progress.txt"; }
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 PEAK_TFLOPS=790

GPU=${GPU:-0}  # GPU=-1 (with small budgets) rehearses the script on a CPU
if [ "$GPU" -ge 0 ]; then
  stamp "env: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader), $(nproc --all) cores"
  python -c "import torch, cupy; assert torch.cuda.is_available(); print('torch', torch.__version__, 'cupy', cupy.__version__)" \
    >>"$OUT/progress.txt" 2>&1 || { stamp "FAIL: no CUDA torch/cupy"; exit 1; }
fi

# The MiniLM base with its MLM head, back to float32 (the weights are bf16-rounded).
mkdir -p /tmp/m && xz -dc .gpu/minilm-mlm.tar.xz | tar xf - -C /tmp/m && python - <<'EOF' || { stamp "FAIL: base"; exit 1; }
import torch
from safetensors.torch import load_file, save_file
sd = load_file("/tmp/m/minilm-mlm/model.bf16.safetensors")
save_file({k: v.float().contiguous() for k, v in sd.items()}, "/tmp/m/minilm-mlm/model.safetensors", metadata={"format": "pt"})
EOF
rm -f /tmp/m/minilm-mlm/model.bf16.safetensors
mkdir -p /tmp/tok && xz -dc .gpu/smollm2-tok.tar.xz | tar xf - -C /tmp/tok
mkdir -p corpus && for s in train:train devel:dev test:test; do
  python -m spacy_msnr convert "$MSNR_SHARED_DATA/blurb/NCBI-disease-IOB/${s%%:*}.tsv" "corpus/${s##*:}.spacy" >/dev/null &
done; wait; [ -f corpus/test.spacy ] || { stamp "FAIL: convert"; exit 1; }
stamp "prepared"

# Stage 1, the GPU almost idle (two light processes side by side): MSLM vs uniform MLM throughput
# on MiniLM (bf16 autocast); fewshot_ner at two shapes.
timeout 80 python benchmarks/mslm_throughput.py --model /tmp/m/minilm-mlm --gpu-id $GPU --steps 20 --rounds 2 --bf16 ${THR_ARGS:-} \
  > "$OUT/mslm_throughput_bf16.txt" 2>&1 &
OMP_NUM_THREADS=8 timeout 80 python benchmarks/fewshot_shapes.py --tokenizer /tmp/tok/smollm2-135m-instruct --shapes ${SHAPES:-smollm2 1b} \
  --gpu-id $GPU --steps 5 --query-limit 30 --out "$OUT" > "$OUT/fewshot_shapes.txt" 2>&1
stamp "fewshot_shapes rc=$?"; wait; stamp "mslm_throughput done"

# Stage 2, in parallel: the NCBI ablation, one process per (seed, adaptation), and the workflow's
# mslm -> train -> evaluate chain at a larger MSLM budget.
( while [ "$GPU" -ge 0 ] && sleep 5; do nvidia-smi --query-gpu=memory.used,utilization.gpu --format=csv,noheader,nounits; done ) > /tmp/smi.txt &
SMI=$!
ABL="--base /tmp/m/minilm-mlm --datasets NCBI-disease-IOB --adapt-steps ${ADAPT_STEPS:-500} --ner-steps ${NER_STEPS:-400} \
     --ner-seconds ${NER_SECONDS:-120} --train-limit 0 --test-limit 0 --gpu-id $GPU --no-peer ${ABL_EXTRA:-}"
pids=()
for seed in ${SEEDS:-0 1 2}; do for m in ${METHODS:-none uniform span pmi mslm}; do
  timeout ${ABL_SECONDS:-250} python benchmarks/mslm_ablation.py $ABL --seeds $seed --methods $m --work /tmp/abl/$seed-$m \
    --results /tmp/abl/$seed-$m/results > /tmp/abl-$seed-$m.log 2>&1 &
  pids+=($!)
done; done
(
  s=$(date +%s)
  timeout 100 python -m spacy_msnr mslm configs/mslm.cfg /tmp/chain/mslm --paths.train corpus/train.spacy \
    --paths.dev corpus/dev.spacy --paths.base_model /tmp/m/minilm-mlm --paths.unlabeled "$MSNR_SHARED_DATA/pubmed/abstracts.jsonl" \
    --training.max_steps ${CHAIN_MSLM_STEPS:-2000} --training.optimizer.learn_rate 0.0001 --model.ner_weight 1.0 --gpu-id $GPU \
    > /tmp/chain-mslm.log 2>&1
  echo "mslm rc=$? $(( $(date +%s) - s ))s" > /tmp/chain-status.txt
  if [ -f /tmp/chain/mslm/config.json ]; then
    timeout 110 python -m spacy train configs/ner_trf.cfg --output /tmp/chain/ner --paths.train corpus/train.spacy \
      --paths.dev corpus/dev.spacy --paths.base_model /tmp/chain/mslm --training.max_steps ${NER_STEPS:-400} --training.eval_frequency ${CHAIN_EVAL:-100} --gpu-id $GPU \
      > /tmp/chain-ner.log 2>&1
    echo "ner rc=$? $(( $(date +%s) - s ))s" >> /tmp/chain-status.txt
    timeout 30 python -m spacy evaluate /tmp/chain/ner/model-best corpus/test.spacy --gpu-id $GPU --output "$OUT/chain_test.json" \
      > /tmp/chain-eval.log 2>&1
    echo "eval rc=$? $(( $(date +%s) - s ))s" >> /tmp/chain-status.txt
  fi
) &
pids+=($!)
for p in "${pids[@]}"; do wait "$p"; done
kill $SMI 2>/dev/null
stamp "stage 2 done"
sort -t, -k1 -n /tmp/smi.txt | tail -1 | sed 's/^/peak GPU memory used MiB, utilization %: /' >> "$OUT/progress.txt"
awk -F, '{u+=$2; n++} END {if (n) print "mean GPU utilization %:", u/n}' /tmp/smi.txt >> "$OUT/progress.txt"
tar czf "$OUT/ablation.tgz" --exclude='*.safetensors' --exclude='*.spacy' --exclude='model-*' --exclude='checkpoint' \
  -C /tmp abl chain-status.txt chain-mslm.log chain-ner.log chain-eval.log smi.txt $(cd /tmp && ls abl-*.log) 2>/dev/null
grep -h "NCBI-disease-IOB/" /tmp/abl-*.log >> "$OUT/progress.txt"
cat /tmp/chain-status.txt >> "$OUT/progress.txt" 2>/dev/null
stamp "end"
