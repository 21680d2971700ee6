#!/usr/bin/env bash
# Retrains both bundled models from scratch on the held-out split, on equal terms
# (docs/model.md, "Held-out retraining"). Shards from `memmamba data` (the sample and
# evaluation books are not in them) are carried in $DATA.
#   A1, A2, A3  a Mamba backbone: LM rows and varied passkey/fact rows, T 256 -> 1024 -> 4096
#   Bmem        MemMamba: fresh memory weights (the shipped config) over the backbone, three
#               losses, blind needles
#   Bmamba      Mamba: the backbone alone, the same rows for the same steps, the answer loss
#   Fmem        the bundled MemMamba-small fine-tuned on the passkey mix (keys of 3-10 digits,
#               the trained wordings), three losses, blind needles ($STEPS_F steps, $LR_F)
#   Fmamba      the bundled Mamba-small on the same rows for the same steps, the answer loss
#               ($F_MEM and $F_MAMBA start them elsewhere, $F_MIX=all adds facts, words and names,
#               composed-facts is facts with composed single keys,
#               composed puts wordings together from parts, facts adds labelled facts;
#               $F_KEY_DIGITS=7-10 sets the digit keys' length; $F_FLAGS adds train flags to both,
#               e.g. --note-key-end or --document-rows 0.4 --document-reads; $F_ANSWER_END is what follows the key in
#               the rows; $F_BLIND is Fmem's share of blind needles, default 1; $F_SEQ_LEN and $F_BATCH
#               the rows' length and count, default 4096 and 8; $PASSKEY_FRACTION every stage's share of
#               passkey rows, default 0.5)
#   Gmem        fresh memory weights over a Mamba file's backbone ($F_MAMBA, default the bundled
#               Mamba-small) on Fmem's rows, three losses, $G_BLIND of the needles blind (0.5);
#               with Fmamba on the same settings it is the G1 pair (docs/model.md, "G1"); $G_CONTEXT
#               sets the memory's context mix (memory_context), $G_CONTEXT_TAPS its earlier taps,
#               $G_IMPORTANCE the note rule (novelty or learned)
# Each stage writes $RUNS/NAME/model.safetensors; A3 and the B stages also a bf16 copy under $OUT.
# Usage: [STEPS_A1=n ...] tools/gpu_retrain.sh STAGE...
set -euo pipefail
cli=build-gpu/bin/memmamba
data=${DATA:-gpu-carry/shards-heldout}
runs=${RUNS:-/tmp/retrain}
out=${OUT:-out}
backbone=${BACKBONE:-$runs/A3/model.safetensors}  # the B stages start from it (a carried copy in another call)
mkdir -p "$runs" "$out"
# $CHECKPOINT_EVERY: steps between checkpoints (default 0, at the end only), so that a call's
# time limit leaves a model to resume from (--resume)
rows=(--data "$data" --device cuda --passkey-fraction "${PASSKEY_FRACTION:-0.5}" --varied-cases --eval-batches 2
      --checkpoint-every "${CHECKPOINT_EVERY:-0}")
# Every 100th progress line and every evaluation, written at once (a killed call keeps its log).
last_line() { awk '(NR % 100 == 0 || /held-out|stopped|error/) { print; fflush() }' ; }
# Untrained memory weights in the shipped MemMamba config (Bmem and Gmem put a backbone under them).
fresh_memory() {
  cat >"$runs/memmamba.json" <<'JSON'
{"conv_kernel": 4, "cross_layer_groups": 2, "cross_layer_period": 2, "d_inner": 0, "d_model": 256, "d_state": 16,
 "dt_rank": 0, "fusion": "weighted", "fusion_gain": 3.0, "fusion_init_scale": 0.1, "importance": "novelty",
 "memory": true, "n_layers": 8, "norm_eps": 1e-05, "note_window": 1, "pool_policy": "priority", "pool_slots": 50,
 "summary_dim": 64, "tau_note": 0.75, "tau_retrieve": -1.0, "vocab_size": 8192}
JSON
  # $G_CONTEXT: tokens the memory's summaries and queries span (docs/model.md, "C1")
  [ -n "${G_CONTEXT:-}" ] && sed -i "s/\"note_window\": 1,/\"note_window\": 1, \"memory_context\": $G_CONTEXT,/" "$runs/memmamba.json"
  # $G_IMPORTANCE: the note rule, novelty (the shipped one) or learned (docs/model.md, "C2")
  [ -n "${G_IMPORTANCE:-}" ] && sed -i "s/\"importance\": \"novelty\"/\"importance\": \"$G_IMPORTANCE\"/" "$runs/memmamba.json"
  local taps=()  # $G_CONTEXT_TAPS: the untrained mix's weight on each earlier token
  [ -n "${G_CONTEXT_TAPS:-}" ] && taps=(--context-taps "$G_CONTEXT_TAPS")
  "$cli" init "$runs/memory-init.safetensors" --config "$runs/memmamba.json" --seed 24 "${taps[@]}" >/dev/null
}
for stage in "$@"; do
  start=$(date +%s)
  case $stage in
    A1) "$cli" train "${rows[@]}" --out "$runs/A1" --mamba-only --seq-len 256 --batch 64 --steps "${STEPS_A1:-1500}" \
          --lr 2e-3 --warmup 200 --answer-loss 1 --seed 21 --eval-every 500 2>&1 | last_line ;;
    A2) "$cli" train "${rows[@]}" --out "$runs/A2" --init "$runs/A1/model.safetensors" --seq-len 1024 --batch 16 \
          --steps "${STEPS_A2:-1500}" --lr 1e-3 --warmup 50 --answer-loss 1 --seed 22 --eval-every 500 2>&1 | last_line ;;
    A3) "$cli" train "${rows[@]}" --out "$runs/A3" --init "$runs/A2/model.safetensors" --seq-len 4096 --batch 8 \
          --steps "${STEPS_A3:-400}" --lr 5e-4 --warmup 20 --answer-loss 1 --seed 23 --eval-every 200 2>&1 | last_line
        "$cli" convert "$runs/A3/model.safetensors" "$out/backbone.safetensors" --dtype bf16 ;;
    Bmem)
      fresh_memory
      "$cli" train "${rows[@]}" --out "$runs/Bmem" --init "$runs/memory-init.safetensors" \
        --init-backbone "$backbone" --seq-len 4096 --batch 8 --steps "${STEPS_B:-500}" --lr 3e-4 \
        --warmup 20 --retrieval-loss 1 --answer-loss 1 --note-loss 1 --blind-needles 1 --seed 25 --eval-every 250 2>&1 | last_line
      "$cli" convert "$runs/Bmem/model.safetensors" "$out/memmamba-small.safetensors" --dtype bf16 ;;
    Bmamba)
      "$cli" train "${rows[@]}" --out "$runs/Bmamba" --init "$backbone" --seq-len 4096 --batch 8 \
        --steps "${STEPS_B:-500}" --lr 3e-4 --warmup 20 --answer-loss 1 --seed 25 --eval-every 250 2>&1 | last_line
      "$cli" convert "$runs/Bmamba/model.safetensors" "$out/mamba-small.safetensors" --dtype bf16 ;;
    Fmem|Fmamba|Gmem)
      if [ "$stage" = Gmem ]; then
        fresh_memory
        from=$runs/memory-init.safetensors
        losses=(--init-backbone "${F_MAMBA:-sample_data/mamba-small.safetensors}" --retrieval-loss 1 --answer-loss 1
                --note-loss 1 --blind-needles "${G_BLIND:-0.5}")
      elif [ "$stage" = Fmem ]; then
        from=${F_MEM:-sample_data/memmamba-small.safetensors}
        losses=(--retrieval-loss 1 --answer-loss 1 --note-loss 1 --blind-needles "${F_BLIND:-1}")
      else
        from=${F_MAMBA:-sample_data/mamba-small.safetensors} losses=(--answer-loss 1)
      fi
      digits=()
      [ -n "${F_KEY_DIGITS:-}" ] && digits=(--key-digits "$F_KEY_DIGITS")
      read -r -a flags <<<"${F_FLAGS:-}"
      digits+=("${flags[@]}")
      [ -n "${F_ANSWER_END:-}" ] && digits+=(--answer-end "$F_ANSWER_END")
      "$cli" train "${rows[@]}" --case-mix "${F_MIX:-passkey}" "${digits[@]}" --out "$runs/$stage" --init "$from" \
        --seq-len "${F_SEQ_LEN:-4096}" --batch "${F_BATCH:-8}" \
        --steps "${STEPS_F:-1500}" --lr "${LR_F:-1e-4}" --warmup 50 "${losses[@]}" --seed "${F_SEED:-43}" --eval-every 500 2>&1 | last_line
      "$cli" convert "$runs/$stage/model.safetensors" "$out/$stage.safetensors" --dtype bf16 ;;
    *) echo "unknown stage '$stage' (A1, A2, A3, Bmem, Bmamba, Fmem, Fmamba or Gmem)" >&2; exit 2 ;;
  esac
  echo "stage $stage: $(( $(date +%s) - start )) s"
done
