#!/bin/bash
# master --threads N + 1 worker; bench at depth 1 and 16; one run each, interleaved twice.
cd "$(dirname "$0")/.."
for round in 1 2; do
for n in 1 2 4; do
  deno run --allow-net --allow-read=lib/ cli/main.ts master --host 127.0.0.1 --port 0 --worker-port 0 --slave-port 0 --threads $n --log-level error > /tmp/tm.out 2>/dev/null &
  MP=$!
  sleep 1.5
  CP=$(grep -o 'clients=[^ ]*' /tmp/tm.out | cut -d= -f2); WP=$(grep -o 'workers=[^ ]*' /tmp/tm.out | cut -d= -f2)
  deno run --allow-net cli/main.ts worker --master $WP --host 127.0.0.1 --log-level error >/dev/null 2>&1 &
  WPID=$!
  sleep 1.5
  for d in 1 16; do
    echo -n "round $round threads=$n depth=$d: "
    deno run --allow-net cli/main.ts bench --connect $CP --depth $d --duration 3 --warmup 1 --json 2>/dev/null | python3 -c 'import json,sys; s=json.load(sys.stdin)["scenarios"][0]; print(s["ops"], s["p50_us"], s["p99_us"])'
  done
  kill $WPID $MP; wait $WPID $MP 2>/dev/null
done
done
