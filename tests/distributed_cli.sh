#!/usr/bin/env bash
# Data parallel on the CPU (gloo, one host): two ranks train the same steps as one process
# (same losses and gradient norms), a run resumes on another number of ranks with the same
# data, evaluations spread over ranks write the single-process file (up to timings and the
# device list), a rank that dies or hangs ends the job with a message and a non-zero exit in
# bounded time, and bad data-parallel flags are usage errors.
# Usage: distributed_cli.sh MEMMAMBA SAMPLE_DATA_DIR   (exit 77: this build has no gloo)
set -u
cli=$1
samples=$2
work=$(mktemp -d)
trap 'pkill -KILL -f "$work" 2>/dev/null; rm -rf "$work"' EXIT
fail=0
say_fail() { echo "FAIL: $*"; fail=1; }

expect() {  # expect CODE PATTERN ARGS...
  local code=$1 pattern=$2
  shift 2
  local out rc
  out=$("$cli" "$@" 2>&1)
  rc=$?
  if [ "$rc" -ne "$code" ] || ! grep -q -- "$pattern" <<<"$out"; then
    say_fail "memmamba $* -> exit $rc (want $code), output:"
    echo "$out" | tail -5
  else
    echo "ok: memmamba $* -> exit $rc"
  fi
}

# Bad flags first: they need no data.
expect 2 "add --device cuda" train --data x --out y --gpus 2
expect 2 "is for the CPU" train --data x --out y --processes 2 --device cuda
expect 2 "give --gpus or --processes" eval docs --out x.json --gpus 2 --processes 2
expect 2 "go together" train --data x --out y --rank 1
expect 2 "this machine has" eval docs --out x.json --gpus 4096 --device cuda
expect 2 "dist-timeout" train --data x --out y --processes 2 --dist-timeout 0
WORLD_SIZE=abc expect 2 "WORLD_SIZE must be a whole number" eval docs --out x.json

mkdir -p "$work/books"
cp "$samples/Alice-s-Adventures-in-Wonderland_11.txt" "$samples/The-Time-Machine_35.txt" "$work/books/"
"$cli" data "$work/books" --out "$work/shards" --hold-out "" --heldout 1 >/dev/null 2>&1 || { echo "FAIL: memmamba data"; exit 1; }
cat >"$work/tiny.json" <<'EOF'
{"vocab_size": 8192, "d_model": 32, "n_layers": 4, "d_state": 8, "summary_dim": 8, "pool_slots": 8, "note_window": 1,
 "cross_layer_period": 2, "cross_layer_groups": 2, "tau_note": 0.2, "tau_retrieve": 0.05}
EOF
train=(train --data "$work/shards" --config "$work/tiny.json" --seq-len 256 --batch 8 --warmup 2 --lr 3e-3
       --eval-every 3 --eval-batches 1 --passkey-fraction 0.25)

out=$("$cli" "${train[@]}" --steps 1 --out "$work/probe" --processes 2 2>&1)
if grep -q "no gloo" <<<"$out"; then
  echo "skipped: this build has no gloo (install libgloo-dev)"
  exit 77
fi

# Columns 3 (loss), 5 (gradient norm), 7 (held-out loss) of two metrics files agree within
# 1e-4 (relative), from row $3 on.
same_metrics() {
  awk -F, -v from="${3:-1}" 'NR == FNR { a[FNR] = $0; next }
    FNR > from {
      split(a[FNR], x, ",")
      for (c = 3; c <= 7; c += 2) {
        if (x[c] == "nan" && $c == "nan") continue
        d = x[c] - $c; if (d < 0) d = -d
        s = x[c] < 0 ? -x[c] : x[c]
        if (d > 1e-4 * (s > 1 ? s : 1)) { print "row " FNR - 1 " column " c ": " x[c] " vs " $c; bad = 1 }
      }
      n++
    }
    END { if (n == 0) { print "no rows compared"; bad = 1 } exit bad }' "$1" "$2"
}

"$cli" "${train[@]}" --steps 6 --out "$work/one" >/dev/null 2>&1 || say_fail "one-process training"
"$cli" "${train[@]}" --steps 6 --out "$work/two" --processes 2 >"$work/two.log" 2>&1 || say_fail "two-rank training"
if same_metrics "$work/one/metrics.csv" "$work/two/metrics.csv"; then echo "ok: two ranks train as one process"; else say_fail "two ranks differ from one process"; fi
grep -q "2 ranks, 4 of each micro-batch's 8 rows per rank" "$work/two.log" || say_fail "the two ranks did not split the batch"
[ "$(grep -c "^step 6/6" "$work/two.log")" -eq 1 ] || say_fail "progress printed by other ranks than rank 0"
# Many small buckets (each summed while the backward pass goes on), with accumulation.
"$cli" "${train[@]}" --steps 6 --accumulation 2 --out "$work/one-acc" >/dev/null 2>&1 || say_fail "one process, accumulation"
"$cli" "${train[@]}" --steps 6 --accumulation 2 --out "$work/buckets" --processes 2 --bucket-mb 0.01 >"$work/buckets.log" 2>&1 ||
  say_fail "two ranks, small buckets"
buckets=$(grep -o "gradients in [0-9]* buckets" "$work/buckets.log" | grep -o "[0-9]*")
if [ "${buckets:-0}" -ge 10 ] && same_metrics "$work/one-acc/metrics.csv" "$work/buckets/metrics.csv"; then
  echo "ok: $buckets buckets, accumulation 2: two ranks train as one process"
else
  say_fail "small buckets (${buckets:-none}) or accumulation differ from one process"
fi

# Resume on another number of ranks: steps 1-3 on two ranks, 4-6 on one, as six on one.
constant=(--schedule constant --checkpoint-every 3)
"$cli" "${train[@]}" "${constant[@]}" --steps 6 --out "$work/whole" >/dev/null 2>&1 || say_fail "whole run"
"$cli" "${train[@]}" "${constant[@]}" --steps 3 --out "$work/split" --processes 2 >/dev/null 2>&1 || say_fail "first half on two ranks"
"$cli" "${train[@]}" "${constant[@]}" --steps 6 --out "$work/split" --resume >/dev/null 2>&1 || say_fail "resume on one process"
if same_metrics "$work/whole/metrics.csv" "$work/split/metrics.csv"; then echo "ok: resumed on another number of ranks"; else say_fail "the resumed run differs"; fi

# A batch that does not split over the ranks.
expect 2 "split evenly over them" "${train[@]}" --steps 1 --out "$work/odd" --processes 3

# Evaluations: the file of one process, up to timings and the device list. Every process runs
# on one thread, as each of two ranks does on two cores: on some CPUs (AVX-512 EPYC) LibTorch's
# kernels round differently on one thread than on two, which is not what this compares.
export MEMMAMBA_THREADS=1
strip() { grep -v '"seconds"\|"wall_seconds"' "$1" | sed '/"devices": \[/,/\]/d'; }
pass=(eval passkey --lengths 256,512 --depths 0,1 --samples 2)
"$cli" "${pass[@]}" --out "$work/p1" >/dev/null 2>&1 || say_fail "passkey, one process"
"$cli" "${pass[@]}" --out "$work/p2" --processes 2 >/dev/null 2>&1 || say_fail "passkey, two ranks"
if diff <(strip "$work/p1.json") <(strip "$work/p2.json") >/dev/null && grep -q '"devices"' "$work/p2.json"; then
  echo "ok: passkey grid on two ranks"
else
  say_fail "the two-rank passkey grid differs"
fi
ppl=(eval ppl "$samples/The-Time-Machine_35.txt" --lengths 512,1k --windows 2 --scored 50 --by-context)
"$cli" "${ppl[@]}" --out "$work/q1.json" >/dev/null 2>&1 || say_fail "perplexity, one process"
"$cli" "${ppl[@]}" --out "$work/q2.json" --processes 2 >/dev/null 2>&1 || say_fail "perplexity, two ranks"
diff <(strip "$work/q1.json") <(strip "$work/q2.json") >/dev/null && echo "ok: perplexity on two ranks" || say_fail "the two-rank perplexity differs"
# Ranks started by hand (as on several hosts), on a port of their own.
docs=(eval docs --noise 2,4 --samples 2)
port=$((20000 + RANDOM % 20000))
"$cli" "${docs[@]}" --out "$work/d1.json" >/dev/null 2>&1 || say_fail "documents, one process"
"$cli" "${docs[@]}" --out "$work/d2.json" --rank 1 --world-size 2 --master-port $port >/dev/null 2>&1 &
"$cli" "${docs[@]}" --out "$work/d2.json" --rank 0 --world-size 2 --master-port $port >/dev/null 2>&1 || say_fail "documents, rank 0 by hand"
wait
diff <(strip "$work/d1.json") <(strip "$work/d2.json") >/dev/null && echo "ok: documents on two ranks started by hand" || say_fail "the hand-started documents run differs"
grep -q '"answered"' "$work/d1.json" && grep -q '"no_document_id"' "$work/d1.json" ||
  say_fail "the documents result does not say what each answer named"

# A rank that dies, and one that hangs: the job ends with a message and a non-zero exit.
long=("${train[@]}" --steps 1000000 --eval-every 0 --checkpoint-every 1000000)
rank_pid() {  # rank_pid LAUNCHER RANK: the copy of that rank
  for p in $(pgrep -P "$1"); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx "RANK=$2" && echo "$p"
  done
}
for fault in KILL STOP; do
  # One log per fault: polling a log the previous run left behind would see its steps.
  log="$work/fault-$fault.log"
  "$cli" "${long[@]}" --out "$work/fault-$fault" --processes 2 --dist-timeout 10 >"$log" 2>&1 &
  launcher=$!
  victim=""
  for _ in $(seq 300); do  # up to 60 s: a loaded two-core machine starts ranks slowly
    if grep -q "^step 2/" "$log" 2>/dev/null; then victim=$(rank_pid $launcher 1); [ -n "$victim" ] && break; fi
    sleep 0.2
  done
  [ -n "$victim" ] || { say_fail "no rank 1 under the launcher"; kill -KILL $launcher; continue; }
  start=$(date +%s)
  kill -$fault "$victim"
  wait $launcher
  rc=$?
  took=$(($(date +%s) - start))
  if [ $rc -ne 0 ] && [ $took -le 40 ] && grep -q "error: rank" "$log"; then
    echo "ok: SIG$fault of rank 1 ended the job in ${took} s (exit $rc): $(grep 'error: rank' "$log" | tail -1 | cut -c1-120)"
  else
    say_fail "SIG$fault of rank 1: exit $rc after ${took} s"
    tail -3 "$log"
  fi
  kill -KILL "$victim" 2>/dev/null
done
# The launcher itself killed (SIGKILL: no handler runs): its ranks go with it.
"$cli" "${long[@]}" --out "$work/orphans" --processes 2 >"$work/orphans.log" 2>&1 &
launcher=$!
for _ in $(seq 300); do grep -q "^step 2/" "$work/orphans.log" 2>/dev/null && break; sleep 0.2; done
ranks=$(pgrep -P $launcher | tr '\n' ' ')
kill -KILL $launcher
wait $launcher 2>/dev/null
sleep 3
left=0
for p in $ranks; do kill -0 "$p" 2>/dev/null && left=$((left + 1)); done
if [ -n "$ranks" ] && [ $left -eq 0 ]; then echo "ok: the launcher's ranks ended with it"; else say_fail "$left of the ranks ($ranks) outlived their launcher"; fi
exit $fail
