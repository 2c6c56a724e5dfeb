#!/bin/sh
# make demo: run paasops in the foreground on ./var/demo, deploy the hello
# example with two instances, and say what to try. Ctrl-C stops everything.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
bin="$top/build/paasops"
data="$top/var/demo"
mkdir -p "$data"
export PAASOPS_SERVER="unix:$data/paasops.sock"

"$bin" serve --data "$data" &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon; exit 0' INT TERM

# Wait (bounded) for the API socket.
i=0
until "$bin" apps >/dev/null 2>&1; do
	i=$((i + 1))
	if [ $i -gt 100 ] || ! kill -0 $daemon 2>/dev/null; then
		echo "demo: the daemon did not start" >&2
		exit 1
	fi
	sleep 0.1
done

if ! "$bin" apply -f "$top/examples/hello/paasops.yaml"; then
	kill -TERM $daemon 2>/dev/null
	wait $daemon
	exit 1
fi
sleep 1.5
"$bin" ps hello || true
cat <<MSG

paasops is running (data dir $data). In another terminal:

  export PAASOPS_SERVER=unix:$data/paasops.sock
  $bin ps hello                  # instances, states, ports
  curl http://127.0.0.1:8080/    # through the router, balanced over both instances
  $bin stats hello               # the router's request metrics
  $bin scale hello web=3
  $bin logs hello -f
  $bin events hello

Press Ctrl-C here to stop the daemon and its instances.
MSG
wait $daemon
