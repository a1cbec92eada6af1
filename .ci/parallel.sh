# Sourced by the CI steps that run many independent jobs (.ci/thread-safety,
# .ci/fuzz).
#
# run_parallel FUNCTION ITEM...: runs `FUNCTION ITEM` for every item, as many
# at once as there are cores (each in the background, so FUNCTION sees the
# caller's variables and arrays); returns 1 when any of them failed, after
# all have ended.
run_parallel() {
  local fn=$1 item jobs running=0 status=0
  shift
  jobs=$(nproc)
  for item in "$@"; do
    "$fn" "$item" &
    running=$((running + 1))
    if [ "$running" -ge "$jobs" ]; then
      wait -n || status=1
      running=$((running - 1))
    fi
  done
  while [ "$running" -gt 0 ]; do
    wait -n || status=1
    running=$((running - 1))
  done
  return "$status"
}
