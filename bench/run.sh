#!/bin/sh
# Runs every paasops benchmark (each one against its anchor, in the same run)
# and prints a short summary at the end. Called by `make bench` after the
# build; `bench/run.sh restart` or `bench/run.sh scale` runs just one.
# restart takes ~5 min (supervisord needs ~1 s per kill), scale ~1 min.
# Each benchmark stops what it started, also on error and on Ctrl-C.
set -u
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
[ -x "$root/build/paasops" ] || { echo "bench: $root/build/paasops missing: run 'make all'" >&2; exit 2; }
command -v supervisord >/dev/null 2>&1 || { echo "bench: supervisord missing (apt-get install supervisor)" >&2; exit 2; }

benches=${*:-restart scale metrics deploy}
out=$(mktemp -d "${TMPDIR:-/tmp}/paasops-bench.XXXXXX") || exit 2
child=
cleanup() {
	# The benchmarks clean up after themselves on SIGTERM/SIGINT; just pass it on and wait.
	[ -n "$child" ] && kill -TERM "$child" 2>/dev/null && wait "$child" 2>/dev/null
	rm -rf "$out"
}
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM HUP
trap 'rm -rf "$out"' EXIT

status=0
for b in $benches; do
	[ -x "$here/$b" ] || { echo "bench: no benchmark '$b'" >&2; status=2; continue; }
	echo "### bench/$b" >&2
	"$here/$b" >"$out/$b.out" &
	child=$!
	wait "$child"
	rc=$?
	child=
	cat "$out/$b.out"
	if [ "$rc" -ne 0 ]; then
		echo "summary: $b FAILED (exit $rc)" >>"$out/$b.out"
		status=1
	fi
done

echo
echo "== bench summary"
for b in $benches; do
	[ -f "$out/$b.out" ] && sed -n 's/^summary: /  /p' "$out/$b.out"
done
exit $status
