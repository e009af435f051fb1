#!/bin/bash
# beside.sh LOG BACKGROUND-COMMAND... --then FOREGROUND-COMMAND...
#
# Runs BACKGROUND-COMMAND (its output to LOG) while FOREGROUND-COMMAND runs, then follows LOG
# until the background command ends. `make test` runs the QEMU update scenarios (a pair of
# their own, mostly one guest busy at a time) beside the namespace and image tiers, which
# mostly wait: the two overlap instead of adding up.
#
# Exit status: the foreground command's if it failed (the background one is stopped then, by
# its PID, and what it printed so far is shown), else the background command's. Ctrl-C or
# SIGTERM stops both.
set -uo pipefail
usage() {
    echo "usage: $0 LOG BACKGROUND-COMMAND... --then FOREGROUND-COMMAND..." >&2
    exit 2
}
[ $# -ge 4 ] || usage
log=$1
shift
background=()
while [ $# -gt 0 ] && [ "$1" != "--then" ]; do
    background+=("$1")
    shift
done
[ $# -ge 2 ] && [ ${#background[@]} -gt 0 ] || usage
shift
mkdir -p "$(dirname "$log")"
echo "==> in the background, beside the next step (output: $log): ${background[*]}"
"${background[@]}" >"$log" 2>&1 &
pid=$!
stop() {
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
}
trap 'stop; exit 130' INT TERM

"$@"
status=$?
if [ $status -ne 0 ]; then
    echo "==> $* failed (exit status $status): stopping the background run (${background[*]})"
    stop
    echo "==> what the background run printed ($log):"
    cat "$log" 2>/dev/null || echo "(nothing: it had not started)"
    exit $status
fi
echo "==> waiting for the background run to end (${background[*]}); its output:"
tail -n +1 -f --pid="$pid" "$log"
wait "$pid"
status=$?
[ $status -eq 0 ] || echo "==> the background run failed (exit status $status): $log"
exit $status
