#!/bin/bash
# Fine-tune both shipped models on one GPU inside a fixed wall-time budget: four runs side by side
# (RandWR and ObfsWR, each with LPIPS in the loss and without), warm-started from
# proface_jax/weights/*.pfj at 112×112, each stopped by --config.time_limit_s so that all of them
# export model.pfj before BUDGET seconds have passed. Results: one OUT/NAME.tgz per run (log,
# command, metrics.jsonl, model.pfj, best.pfj, last sample grid); pick by validation, then run
# experiments.evaluate on the test split.
#
# Written for a lent GPU machine that sees neither ../shared nor the internet:
#   here:  python -m experiments.device_bundle --out .gpu      (faces + float16 LPIPS weights)
#          wheels the machine lacks, if any, in .whl/ (and .whl/alt/: versions to fall back to)
#   there: OUT=/some/dir bash experiments/gpu_finetune.sh
# With data and weights at hand elsewhere: BUNDLE="" DATA=folder:PATH (LPIPS by the usual lookup).
# Not yet run on a GPU (the loan was withdrawn before the first call; see the issue-8 notes), and
# not dry-run in this form: only an earlier variant of it ran end to end on the CPU. To try it
# here first: LOCAL=1 PY=python BUDGET=240 BATCH=2 STEPS=30 EVERY=10 bash experiments/gpu_finetune.sh
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
T0=$(date +%s)
el() { echo $(( $(date +%s) - T0 )); }
BUDGET=${BUDGET:-575}; STEPS=${STEPS:-1500}; BATCH=${BATCH:-16}; EVERY=${EVERY:-250}
BUNDLE=${BUNDLE-.gpu}
W=/tmp/pfw; rm -rf $W; mkdir -p $W
PY=${PY:-python3}
SITE=$PWD; ALT=$PWD
if [ -d .whl ] && [ -z "${LOCAL:-}" ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 3
  SITE=/tmp/site:$PWD; ALT=$SITE
  if [ -d .whl/alt ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/alt .whl/alt/*.whl || exit 3
    ALT=/tmp/alt:$SITE
  fi
fi
if [ -n "$BUNDLE" ]; then
  PYTHONPATH=$SITE $PY -m experiments.device_bundle --unpack-lpips $BUNDLE/lpips_vgg16_f16.npz /tmp/lpips_vgg16.npz || exit 4
  export PROFACE_LPIPS_WEIGHTS=/tmp/lpips_vgg16.npz
  DATA=folder:$PWD/$BUNDLE/faces
fi
DATA=${DATA:?set DATA=folder:PATH or BUNDLE}
export XLA_PYTHON_CLIENT_PREALLOCATE=false
# Preflight, 2 smoke steps, with the machine's packages and with the fallback ones, in parallel.
pre() { PYTHONPATH=$1 timeout 150 $PY -c "import jax, flax, optax; print('$2', jax.__version__, flax.__version__, optax.__version__, jax.devices())" \
  && PYTHONPATH=$1 timeout 150 $PY -m experiments.train --workdir $W/pre_$2 --config experiments/configs/smoke.py --config.data=$DATA > $W/pre_$2.log 2>&1; echo $? > $W/pre_$2.rc; }
pre $SITE image & pre $ALT alt & wait
echo "preflight rc image=$(cat $W/pre_image.rc) alt=$(cat $W/pre_alt.rc) at $(el) s"
if [ "$(cat $W/pre_image.rc)" = 0 ]; then export PYTHONPATH=$SITE
elif [ "$(cat $W/pre_alt.rc)" = 0 ]; then export PYTHONPATH=$ALT
else tail -30 $W/pre_image.log $W/pre_alt.log; tar czf $OUT/preflight.tgz -C $W .; exit 5; fi
REM=$((BUDGET - $(el))); LIMIT=${LIMIT:-$((REM - 180))}; echo "time limit per run: $LIMIT s (remaining $REM s)"
COMMON="--config experiments/configs/fast.py --config.data=$DATA --config.small_size=0 --config.small_size_steps=0
 --config.batch_size=$BATCH --config.num_train_steps=$STEPS --config.time_limit_s=$LIMIT --config.optim.lr=1e-4
 --config.optim.warmup_steps=50 --config.eval_every=$EVERY --config.checkpoint_every=$EVERY --config.sample_every=100000
 --config.log_every=50 --config.num_workers=3 --config.prefetch=4 --config.donor_limit=100 --config.eval_lpips=True --config.progress_bar=False"
RW="--mode=randwr --config.init_from=proface_jax/weights/randwr.pfj --config.loss.lambdas_randwr=(0.4,0.4,0.2) --config.loss.wr_decorrelate=2.0 --config.loss.wrong_on_clamped=False"
OW="--mode=obfswr --config.init_from=proface_jax/weights/obfswr.pfj --config.loss.lambdas_obfswr=(0.5,0.7,0.3) --config.loss.obfs_decorrelate=1.0 --config.loss.obfs_l1_triplet_margin=0.05 --config.loss.wrong_on_clamped=True"
run() { name=$1; shift; echo "$PY -m experiments.train --workdir \$W/$name $COMMON $*" > $W/$name.cmd
  timeout $((REM - 12)) $PY -m experiments.train --workdir $W/$name $COMMON "$@" > $W/$name.log 2>&1; echo "$name rc $? at $(el) s"; }
run randwr_lp $RW --config.loss.use_lpips=True &
run randwr_l1 $RW --config.loss.use_lpips=False &
run obfswr_lp $OW --config.loss.use_lpips=True &
run obfswr_l1 $OW --config.loss.use_lpips=False &
wait
for n in randwr_lp randwr_l1 obfswr_lp obfswr_l1; do
  echo "== $n"; grep -E '"kind": "(eval|time_limit)"' $W/$n/metrics.jsonl 2>/dev/null | tail -2 | cut -c1-600
  grep -E 'steps_per_s' $W/$n/metrics.jsonl 2>/dev/null | tail -1 | grep -o '"steps_per_s": [0-9.]*'
  tail -3 $W/$n.log
  s=$(ls $W/$n/samples 2>/dev/null | tail -1)
  tar czf $OUT/$n.tgz -C $W $n.log $n.cmd $n/metrics.jsonl $n/model.pfj $n/best.pfj $n/config.json ${s:+$n/samples/$s} 2>/dev/null
done
tar czf $OUT/pre.tgz -C $W pre_image.log pre_alt.log
echo "done at $(el) s"
