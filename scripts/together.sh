#!/usr/bin/env bash
# Run each argument as a command in a process group of its own, and stop them all together:
# on Ctrl-C, on TERM, or as soon as one of them exits. Each group is signalled by its own
# PID, so nothing is left running (`kill 0` from make's /bin/sh missed jobs that `set -m`
# had put in groups of their own).
set -u
pids=()
stop() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null; done
  wait
}
interrupted=0
trap 'interrupted=1; stop' INT TERM
trap stop EXIT
set -m
for command in "$@"; do
  bash -c "exec $command" &
  pids+=("$!")
done
set +m
wait -n
status=$?
if [ "$interrupted" = 0 ]; then
  echo "together.sh: a process exited (status $status); stopping the others" >&2
fi
