#!/usr/bin/env bash
# bench/gate.sh: measure what the conditional-access gate (`vigil gate`)
# adds to an upstream, with the load generator `vigil bench gate`, and print
# the figures as rows of docs/BENCHMARKS.md's results table:
#
#   14   throughput: GATE_CONCURRENCY (16) closed-loop clients, the upstream
#        alone and through the gate in alternating rounds of one run:
#        req/s of each, the ratio, the gate's CPU per request
#   14b  latency: one client at a time (no queueing), the same run shape:
#        p50 and p99 of each and what the gate adds
#   14c  the decision alone in process, one core (gatekeeper's
#        BenchmarkCheck): report from the cache, proof verified, replay
#        recorded, route checked
#
# Each figure is the median of GATE_RUNS runs (default 5) of one command;
# every run starts its own gate process (a key set it holds: the report CA)
# and its own upstream, on 127.0.0.1, and stops them. The load generator,
# the upstream and the gate share the machine's cores.
#
#   bench/gate.sh                            # print the rows
#   GATE_OUT=docs/BENCHMARKS.md bench/gate.sh  # also put them there
#
# Environment:
#   GATE_RUNS         runs of each figure (default 5, minimum 3)
#   GATE_DURATION     each run's timed phase (default 16s; half per target)
#   GATE_CONCURRENCY  clients of figure 14 (default 16)
#   GATE_FIGS         figures to measure (default "14 14b 14c"; 14 and 14b
#                     go together)
#   GATE_OUT          a BENCHMARKS.md whose rows measured now (and the
#                     notes of 14 and 14b) are replaced by these
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
GO=${GO:-go}
RUNS=${GATE_RUNS:-5}
DUR=${GATE_DURATION:-16s}
CONC=${GATE_CONCURRENCY:-16}
FIGS=" ${GATE_FIGS:-14 14b 14c} "
want() { case $FIGS in *" $1 "*) return 0 ;; esac; return 1; }
NPROC=$(nproc)
die() { echo "gate.sh: $*" >&2; exit 2; }
[ "$RUNS" -ge 3 ] 2>/dev/null || die "GATE_RUNS must be >= 3"
for t in "$GO" jq awk; do command -v "$t" >/dev/null || die "$t not found (apt-get install jq)"; done

W=$(mktemp -d "${TMPDIR:-/tmp}/vigil-gate.XXXXXX")
trap 'rm -rf "$W"' EXIT INT TERM
echo "== building vigil into \$W/bin" >&2
COMMIT=$(git rev-parse HEAD 2>/dev/null || echo unknown)
$GO build -o "$W/bin/" ./cmd/vigil
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2] + v[NR/2+1]) / 2 }'; }
# runs NAME ARGS...: GATE_RUNS runs of vigil bench gate, JSON in $W/NAME-i.json.
runs() {
	local name=$1 i
	shift
	for i in $(seq "$RUNS"); do
		echo "== $name run $i/$RUNS: vigil bench gate $*" >&2
		"$W/bin/vigil" bench gate -q -o json --duration "$DUR" "$@" > "$W/$name-$i.json" || {
			cat "$W/$name-$i.json" >&2
			die "vigil bench gate $* failed (exit $?)"
		}
		jq -r '"  upstream \(.upstream.rate)/s p50 \(.upstream.latency_ms.p50) p99 \(.upstream.latency_ms.p99); gate \(.gate.rate)/s p50 \(.gate.latency_ms.p50) p99 \(.gate.latency_ms.p99); gate CPU \(.gate_cpu_ms_per_request) ms"' "$W/$name-$i.json" >&2
	done
}
# med NAME JQ: the median over the runs of NAME of JQ.
med() { for f in "$W/$1"-*.json; do jq -r "$2" "$f"; done | median; }
all() { for f in "$W/$1"-*.json; do jq -r "$2" "$f"; done | sort -g | paste -sd, - | sed 's/,/, /g'; }

ROWS=$W/rows.md
NOTES=$W/notes.md
: > "$ROWS"
: > "$NOTES"
if want 14 || want 14b; then
runs tput --concurrency "$CONC"
runs lat --concurrency 1

CMD="\`\$W/bin/vigil bench gate -q -o json --duration $DUR"
GR=$(med tput .gate.rate)
V14=FAIL
awk -v r="$GR" 'BEGIN { exit !(r >= 5000) }' && V14=PASS
{
	printf '| 14 | the gate (`vigil gate`, a process of its own) in front of a trivial upstream on 127.0.0.1, closed loop by %s clients, a fresh proof of possession per request (ES256, software report key) with one cached session report (report CA held: one P-256 check a request), route min-level 2 + trust vector + max-age; the upstream alone and through the gate in 4 alternating rounds of one run; median of %s runs; generator, upstream and gate share the %s cores | **%s req/s** through the gate (runs: %s); gate CPU **%s ms a request** = %s /s per core (runs: %s); generator and upstream %s ms a request | upstream alone: %s req/s | %s× (gate/upstream rate) | ≥ 5,000 /s on 2 cores | **%s** (shared cores; the gate alone: %s /s per core) | %s --concurrency %s`\\` |\n' \
		"$CONC" "$RUNS" "$NPROC" "$GR" "$(all tput .gate.rate)" "$(med tput .gate_cpu_ms_per_request)" "$(med tput .gate_capacity_per_core)" \
		"$(all tput .gate_cpu_ms_per_request)" "$(med tput .generator_cpu_ms_per_request)" "$(med tput .upstream.rate)" "$(med tput .rate_ratio)" \
		"$V14" "$(med tput .gate_capacity_per_core)" "$CMD" "$CONC"
	printf '| 14b | latency the gate adds: one client (no queueing), otherwise as figure 14; p50 and p99 of the gate less the upstream alone, in the same run; median of %s runs | added p50 **%s ms**, p99 **%s ms** (runs: p50 %s; p99 %s); through the gate p50 %s ms, p99 %s ms, %s req/s | upstream alone p50 %s ms, p99 %s ms, %s req/s | - | p50 and p99 reported | - | %s --concurrency 1`\\` |\n' \
		"$RUNS" "$(med lat .added_p50_ms)" "$(med lat .added_p99_ms)" "$(all lat .added_p50_ms)" "$(all lat .added_p99_ms)" \
		"$(med lat .gate.latency_ms.p50)" "$(med lat .gate.latency_ms.p99)" "$(med lat .gate.rate)" \
		"$(med lat .upstream.latency_ms.p50)" "$(med lat .upstream.latency_ms.p99)" "$(med lat .upstream.rate)" "$CMD"
} | sed 's/`\\`/`/g' >> "$ROWS"
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
echo "- Figures 14, 14b (bench/gate.sh, commit \`${COMMIT:0:12}\`): load average $LOAD0 at the start, $LOAD1 at the end. The gate's CPU time is read from /proc/PID/stat around each gate round; on $NPROC cores of its own the gate would admit about $(awk -v c="$(med tput .gate_capacity_per_core)" -v n="$NPROC" 'BEGIN { printf "%.0f", c*n }') /s at that cost (what the generator and other processes use comes off it)." >> "$NOTES"
fi
if want 14c; then
	echo "== 14c: go test -bench BenchmarkCheck ./gatekeeper/ ($RUNS runs)" >&2
	$GO test -run '^$' -bench 'BenchmarkCheck$' -benchtime 2s -count "$RUNS" -cpu 1 -benchmem ./gatekeeper/ > "$W/check.txt"
	NS=$(awk '/^BenchmarkCheck/ { print $3 }' "$W/check.txt" | median)
	AL=$(awk '/^BenchmarkCheck/ { print $7 }' "$W/check.txt" | median)
	printf '| 14c | the gate'"'"'s decision alone, in process, one core (BenchmarkCheck: the session report from the cache of verified reports, a fresh ES256 proof verified, the replay cache written, the route'"'"'s level, trust vector and age); median of %s runs | **%s /s (%s µs each)**, %s allocations | - | - | info | - | `go test -run '"'"'^$'"'"' -bench '"'"'BenchmarkCheck$'"'"' -benchtime 2s -count %s -cpu 1 -benchmem ./gatekeeper/` |\n' \
		"$RUNS" "$(awk -v n="$NS" 'BEGIN { printf "%.0f", 1e9/n }')" "$(awk -v n="$NS" 'BEGIN { printf "%.1f", n/1000 }')" "$AL" "$RUNS" >> "$ROWS"
fi
echo
cat "$ROWS"
echo
cat "$NOTES"

if [ -n "${GATE_OUT:-}" ]; then
	[ -f "$GATE_OUT" ] || die "GATE_OUT=$GATE_OUT: no such file"
	awk -v rows="$ROWS" -v notes="$NOTES" -v figs="$FIGS" '
		BEGIN { n = split(figs, f, " "); for (i = 1; i <= n; i++) fresh[f[i]] = 1 }
		/^\| 14[a-z]? \|/ { split($0, c, " "); if (c[2] in fresh) next }
		/^- Figures 14/ && ("14" in fresh) { next }
		/^\| [0-9]+[a-z]? \|/ { last = NR }
		{ line[NR] = $0 }
		END {
			for (i = 1; i <= NR; i++) {
				if (!(i in line)) continue
				print line[i]
				if (i == last) while ((getline l < rows) > 0) print l
			}
			while ((getline l < notes) > 0) print l
		}' "$GATE_OUT" > "$W/out.md"
	cp "$W/out.md" "$GATE_OUT"
	echo "gate.sh: rows written to $GATE_OUT" >&2
fi
