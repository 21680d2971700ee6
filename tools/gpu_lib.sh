# Shared by the GPU scripts (sourced).
# median_tps METRICS_CSV [N=15]: the median tokens/s of a training run's last N steps
# (metrics.csv's tokens_per_second column; the middle value, the lower one of two).
median_tps() {
  awk -F, 'NR == 1 {for (i = 1; i <= NF; i++) if ($i == "tokens_per_second") c = i; next} {print $c}' "$1" |
    tail -n "${2:-15}" | sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'
}
