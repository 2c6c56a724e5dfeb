#!/bin/bash
# Benchmark child: on start, append "SLOT PID START_US" to the file named by $1
# (START_US: CLOCK_REALTIME in microseconds, read without forking through
# bash's $EPOCHREALTIME), then become an idle `sleep` under the same pid.
# The slot is the paasops instance id or the supervisord process name.
# bash rather than POSIX sh: dash has no clock builtin, and forking `date`
# would add about a millisecond to every measured restart.
printf '%s %s %s\n' "${PAASOPS_INSTANCE:-$SUPERVISOR_PROCESS_NAME}" "$$" "${EPOCHREALTIME/[.,]/}" >>"$1"
exec sleep 1000000
