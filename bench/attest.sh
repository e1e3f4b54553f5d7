#!/usr/bin/env bash
# bench/attest.sh: measure the attestation service (vigil server) under load
# with the load generator `vigil bench attest`, against the issue's targets,
# and print the figures as rows of docs/BENCHMARKS.md's results table:
#
#   11   full attestations over HTTPS (challenge + evidence), SQLite:
#        1,000 /s offered for 30 s, p50 and p99 latency
#   11b  the same on PostgreSQL (VIGIL_TEST_POSTGRES; skipped when unset)
#   11c  the same on SQLite over plain HTTP (the protocol does not need TLS)
#   12   100,000 simulated agents each attesting every 5 minutes
#        (333 /s, Poisson arrivals) for 2 minutes: p99 < 100 ms
#   12b  enrolling those 100,000 agents (credential activation, approval)
#   13   the service's peak RSS (VmHWM) through row 12: < 300 MB
#
# Every service is a separate `vigil server` process (TLS with its
# development CA, the default per-agent rate limit) on 127.0.0.1, so its
# memory is its own; the generator runs on the same machine (with GOGC=400,
# to take less of it) and its CPU use is part of the figures. It builds its own vigil from the working
# tree into a temporary directory, stops every process it started, and
# stops by itself (each run is bounded by its duration and a timeout).
#
#   bench/attest.sh                     # all rows, about 20 minutes on 2 cores
#   ATTEST_ROWS="11" bench/attest.sh    # some rows only
#   ATTEST_OUT=docs/BENCHMARKS.md bench/attest.sh   # also put the rows there
#
# Environment:
#   ATTEST_ROWS       rows to measure (default "11 12"; 11b and 11c run with
#                     11 or alone ("11b");
#                     12b and 13 with 12)
#   ATTEST_RATE       offered rate of row 11 (default 1000)
#   ATTEST_RUNS       runs of each row 11 measurement (default 3)
#   ATTEST_DURATION   duration of row 11 (default 30s)
#   ATTEST_AGENTS     agents of row 12 (default 100000)
#   ATTEST_DURATION12 duration of row 12 (default 120s)
#   VIGIL_TEST_POSTGRES  PostgreSQL DSN for row 11b (a fresh schema is made
#                     in it for each run and dropped afterwards)
#   ATTEST_OUT        a BENCHMARKS.md whose rows 11–13 are replaced by these
#   ATTEST_KEEP       a directory to keep the generator's JSON reports and
#                     the servers' logs in
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
GO=${GO:-go}
ROWSEL=" ${ATTEST_ROWS:-11 12} "
RATE=${ATTEST_RATE:-1000}
DUR=${ATTEST_DURATION:-30s}
RUNS=${ATTEST_RUNS:-3}
AGENTS12=${ATTEST_AGENTS:-100000}
DUR12=${ATTEST_DURATION12:-120s}
PG=${VIGIL_TEST_POSTGRES:-}
NPROC=$(nproc)

want() { case $ROWSEL in *" $1 "*) return 0 ;; esac; return 1; }
say() { printf '\n== %s\n' "$*" >&2; }
die() { echo "attest.sh: $*" >&2; exit 2; }
f1() { awk -v x="$1" 'BEGIN { printf "%.1f", x }'; }
for t in "$GO" jq awk pgrep; do command -v "$t" >/dev/null || die "$t not found (apt-get install jq procps)"; done
[ -x /usr/bin/time ] || die "/usr/bin/time not found (apt-get install time)"

W=$(mktemp -d "${TMPDIR:-/tmp}/vigil-attest.XXXXXX")
PIDS=()
SCHEMAS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	if [ -n "${ATTEST_KEEP:-}" ]; then
		mkdir -p "$ATTEST_KEEP"
		cp "$W"/*.json "$W"/*.log "$W"/*.err "$W"/*.cpu "$ATTEST_KEEP"/ 2>/dev/null || true
	fi
	for sc in "${SCHEMAS[@]}"; do psql -q "$PG" -c "DROP SCHEMA IF EXISTS $sc CASCADE" >/dev/null 2>&1 || true; done
	rm -rf "$W"
}
trap cleanup EXIT INT TERM

say "building vigil into \$W/bin"
COMMIT=$(git rev-parse HEAD 2>/dev/null || echo unknown)
$GO build -o "$W/bin/" ./cmd/vigil
VIGIL=$W/bin/vigil
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)

ROWS=$W/rows.tsv
: > "$ROWS"
row() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >> "$ROWS"; }
NOTES=$W/notes.md
: > "$NOTES"

# server NAME ARGS...: start `vigil server` on a free port with its data in
# $W/NAME; sets SRV_PID, SRV_URL, SRV_DIR. It samples the server's CPU time
# (clock ticks) every 0.2 s into $W/NAME.cpu.
server() {
	local name=$1
	shift
	SRV_DIR=$W/$name
	mkdir -p "$SRV_DIR"
	"$VIGIL" server --data "$SRV_DIR" --listen 127.0.0.1:0 "$@" > "$SRV_DIR.log" 2>&1 &
	SRV_PID=$!
	PIDS+=("$SRV_PID")
	for _ in $(seq 100); do
		SRV_URL=$(sed -n 's/^vigil server: serving \(https\?:[^ ]*\).*/\1/p' "$SRV_DIR.log")
		[ -n "$SRV_URL" ] && break
		kill -0 "$SRV_PID" 2>/dev/null || { cat "$SRV_DIR.log" >&2; die "vigil server $name exited"; }
		sleep 0.1
	done
	[ -n "$SRV_URL" ] || die "vigil server $name did not start"
	sample "$SRV_PID" > "$W/$name.cpu" &
	PIDS+=("$!")
	echo "  $name: $SRV_URL (pid $SRV_PID)" >&2
}

# stop PID: SIGTERM, wait.
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; }

# bench NAME ARGS...: vigil bench attest against the last server, JSON into
# $W/NAME.json (the exit code is kept: 1 means some attestations failed or
# were missed, which the row reports). The generator's CPU time is sampled
# into $W/NAME.gcpu and its total is in $W/NAME.time.
bench() {
	local name=$1 rc=0 tp p vp=""
	shift
	local ca=()
	[ ! -f "$SRV_DIR/tls/tls-ca.pem" ] || ca=(--ca "$SRV_DIR/tls/tls-ca.pem")
	# GOGC=400: the generator (not the service) spends less time in GC.
	GOGC=400 timeout 1800 /usr/bin/time -f '%U %S' -o "$W/$name.time" "$VIGIL" bench attest --server "$SRV_URL" "${ca[@]}" \
		--admin-token-file "$SRV_DIR/admin-token" -o json "$@" > "$W/$name.json" 2> "$W/$name.err" &
	tp=$!
	for _ in $(seq 100); do
		p=$(pgrep -P "$tp" || true)
		[ -z "$p" ] || vp=$(pgrep -P "$p" || true)
		[ -n "$vp" ] && break
		sleep 0.02
	done
	if [ -n "$vp" ]; then
		sample "$vp" > "$W/$name.gcpu" &
		PIDS+=("$!")
	fi
	wait "$tp" || rc=$?
	if [ "$rc" -ge 2 ] || ! jq -e .ok "$W/$name.json" > /dev/null 2>&1; then
		cat "$W/$name.err" >&2
		return 2
	fi
	jq -r '"  \(.ok) ok, \(.failed) failed, \(.missed) missed, \(.achieved_rate)/s; latency p50 \(.latency_ms.p50) ms p99 \(.latency_ms.p99) ms; errors \(.errors)"' "$W/$name.json" >&2
}

# sample PID: "epoch-seconds CPU-ticks" of PID every 0.2 s while it runs.
sample() {
	while kill -0 "$1" 2>/dev/null; do
		echo "$(date +%s.%N) $(awk '{ print $14 + $15 }' "/proc/$1/stat" 2>/dev/null)"
		sleep 0.2
	done
}

# gen_cpu NAME: the generator's CPU seconds from its phase 2 start to its
# exit (its total from /usr/bin/time less the sample at the start).
gen_cpu() {
	local t0
	t0=$(epoch "$1" started)
	[ -s "$W/$1.gcpu" ] && [ -s "$W/$1.time" ] || return 0
	awk -v a="$t0" -v tot="$(awk 'END { print ($1 + $2) * 100 }' "$W/$1.time")" '$1 <= a && $2 != "" { c0 = $2 } END { if (c0 != "") printf "%.2f", (tot - c0) / 100 }' "$W/$1.gcpu"
}
j() { jq -r "$2" "$W/$1.json"; }

# server_cpu NAME: the server's CPU seconds between the bench's phase 2
# start and end (from the samples of 0.2 s).
epoch() { jq -r ".$2"' | capture("(?<s>[^.]*)(\\.(?<f>[0-9]+))?Z") | ((.s + "Z" | fromdate) + ("0." + (.f // "0") | tonumber))' "$W/$1.json"; }
server_cpu() {
	local t0 t1
	t0=$(epoch "$1" started)
	t1=$(epoch "$1" ended)
	sleep 0.5 # a sample after the end
	awk -v a="$t0" -v b="$t1" '$1 <= a { c0 = $2 } $1 >= b && !d { c1 = $2; d = 1 } END { if (c0 != "" && c1 != "") printf "%.2f", (c1 - c0) / 100 }' "$W/$1.cpu"
}

CMD_SRV="\$W/bin/vigil server --data \$W/srv --listen 127.0.0.1:0"
CMD_BENCH="GOGC=400 \$W/bin/vigil bench attest --server \$URL --ca \$W/srv/tls/tls-ca.pem --admin-token-file \$W/srv/admin-token -o json"

# row11 ID DBLABEL NAME [server args]: $RATE/s offered for $DUR, $RUNS times
# (a new service each time); the run of median rate gives the latencies.
row11() {
	local id=$1 label=$2 name=$3 r n proto cmd rates="" runs="" med cpu cpus="" gcpu gcpus="" verdict
	shift 3
	say "$id. full attestations, $label: $RATE/s offered for $DUR (1,000 agents), $RUNS runs"
	cmd="\`$CMD_SRV${*:+ $*}\`; \`$CMD_BENCH --agents 1000 --rate $RATE --duration $DUR\`"
	cmd=${cmd//@PG@/\$VIGIL_TEST_POSTGRES (a new schema a run, as search_path)}
	for r in $(seq "$RUNS"); do
		n=$name-$r
		# @PG@ is a fresh PostgreSQL schema for each run.
		local args=() a
		for a in "$@"; do
			if [ "$a" = @PG@ ]; then
				SCHEMAS+=("vigil_bench_$$_$r")
				psql -q "$PG" -c "CREATE SCHEMA vigil_bench_$$_$r" > /dev/null
				case $PG in *\?*) a="$PG&search_path=vigil_bench_$$_$r" ;; *) a="$PG?search_path=vigil_bench_$$_$r" ;; esac
			fi
			args+=("$a")
		done
		server "$n" "${args[@]}"
		if ! bench "$n" --agents 1000 --rate "$RATE" --duration "$DUR"; then
			stop "$SRV_PID"
			row "$id" "full attestations, $label" "error" "-" "-" "≥ 1,000 /s" "ERROR" "$cmd"
			return
		fi
		cpu=$(server_cpu "$n")
		gcpu=$(gen_cpu "$n")
		stop "$SRV_PID"
		runs="$runs$(j "$n" .achieved_rate) $n\n"
		[ -z "$cpu" ] || cpus="$cpus$(awk -v c="$cpu" -v k="$(j "$n" .ok)" 'BEGIN { printf "%.2f", c*1000/k }')\n"
		[ -z "$gcpu" ] || gcpus="$gcpus$(awk -v c="$gcpu" -v k="$(j "$n" .ok)" 'BEGIN { printf "%.2f", c*1000/k }')\n"
	done
	# The median run by achieved rate.
	med=$(printf "$runs" | sort -g | awk '{ v[NR] = $2 } END { print v[int((NR+1)/2)] }')
	rates=$(printf "$runs" | sort -g | awk '{ printf "%s%s", (NR > 1 ? ", " : ""), $1 }')
	proto=HTTPS
	case $SRV_URL in http:*) proto=HTTP ;; esac
	verdict=FAIL
	if [ "$(j "$med" '.failed + .missed')" -eq 0 ] && awk -v r="$RATE" 'BEGIN { exit !(r >= 1000) }'; then verdict=PASS; fi
	row "$id" "full attestations over $proto (challenge, then evidence from a simulated TPM: quote, certification, report signature; appraisal, Rego, EAR, stored), $label, $RATE /s offered open loop for $DUR by 1,000 agents, at most 64 in flight; the median of $RUNS runs, each on a new service; service and generator share the $NPROC cores" \
		"**$(j "$med" .achieved_rate) /s** ($(j "$med" .ok) of $(j "$med" '.attempts + .missed') attested, $(j "$med" .failed) failed, $(j "$med" .missed) missed; runs: $rates /s); latency p50 **$(j "$med" .latency_ms.p50) ms**, p99 **$(j "$med" .latency_ms.p99) ms** (from schedule: p99 $(j "$med" .response_ms.p99) ms)" \
		"-" "-" "≥ 1,000 /s, p50 and p99 reported" "$verdict" "$cmd"
	if [ -n "$cpus" ] && [ -n "$gcpus" ]; then
		cpu=$(printf "$cpus" | median)
		gcpu=$(printf "$gcpus" | median)
		note "- Figure $id: CPU time per attestation during phase 2 (medians of the runs): the service $cpu ms$([ "$id" != 11b ] || echo " (PostgreSQL's own processes not counted)"), the load generator $gcpu ms. On $NPROC cores the two together top out near $(awk -v c="$cpu" -v g="$gcpu" -v n="$NPROC" 'BEGIN { printf "%.0f", n*1000/(c+g) }') /s, the service alone near $(awk -v c="$cpu" -v n="$NPROC" 'BEGIN { printf "%.0f", n*1000/c }') /s; what other processes used of the cores comes off that. Errors of the median run: $(j "$med" '.errors | tostring')."
	fi
}
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR+1)/2]; else print (v[NR/2] + v[NR/2+1]) / 2 }'; }
note() { printf '%s\n' "$*" >> "$NOTES"; }

if want 11; then row11 11 "SQLite" sqlite; fi
if want 11 || want 11b; then
	if [ -n "$PG" ]; then
		command -v psql >/dev/null || die "psql not found (row 11b makes a schema with it)"
		row11 11b "PostgreSQL" postgres --db @PG@
	else
		note "- Figure 11b skipped: VIGIL_TEST_POSTGRES is not set."
	fi
fi
if want 11 || want 11c; then row11 11c "SQLite, plain HTTP (--insecure-http)" sqlite-http --insecure-http; fi

if want 12; then
	say "12. $AGENTS12 agents attesting every 5 minutes: enroll them, then $DUR12 at $((AGENTS12 / 300)) /s (Poisson)"
	RATE12=$(awk -v n="$AGENTS12" 'BEGIN { printf "%.1f", n / 300 }')
	server fleet
	A12="--agents $AGENTS12 --enroll-concurrency 32 --rate $RATE12 --arrivals poisson --duration $DUR12"
	# shellcheck disable=SC2086
	if bench fleet $A12; then
		HWM=$(awk '/^VmHWM/ { printf "%.1f", $2/1024 }' "/proc/$SRV_PID/status")
		RSS=$(awk '/^VmRSS/ { printf "%.1f", $2/1024 }' "/proc/$SRV_PID/status")
		cpu=$(server_cpu fleet)
		gcpu=$(gen_cpu fleet)
		stop "$SRV_PID"
		P99=$(j fleet .latency_ms.p99)
		v12=FAIL
		if [ "$(j fleet '.failed + .missed')" -eq 0 ] && awk -v p="$P99" 'BEGIN { exit !(p < 100) }'; then v12=PASS; fi
		row 12 "$AGENTS12 simulated agents (simulated TPMs, ECC P-256 EK), each attesting every 5 minutes on average: $RATE12 /s, Poisson arrivals, for $DUR12 after enrolling them all; SQLite" \
			"p99 **$P99 ms** (p50 $(j fleet .latency_ms.p50) ms, p90 $(j fleet .latency_ms.p90) ms, max $(j fleet .latency_ms.max) ms; from schedule p99 $(j fleet .response_ms.p99) ms); $(j fleet .ok) attested at $(j fleet .achieved_rate) /s, $(j fleet .failed) failed, $(j fleet .missed) missed" \
			"-" "-" "p99 < 100 ms" "$v12" "\`$CMD_SRV\`; \`$CMD_BENCH $A12\`"
		row 12b "enrolling the $AGENTS12 agents of figure 12 (enroll, credential activation, admin approval; 32 in flight)" \
			"$(j fleet .enrollment.enrolled) in $(f1 "$(j fleet .enrollment.duration_seconds)") s ($(j fleet .enrollment.rate) /s; p50 $(j fleet .enrollment.latency_ms.p50) ms, p99 $(j fleet .enrollment.latency_ms.p99) ms)" \
			"-" "-" "info" "-" "\`$CMD_BENCH $A12\`"
		v13=FAIL
		awk -v m="$HWM" 'BEGIN { exit !(m < 286.1) }' && v13=PASS # 300 MB = 286.1 MiB
		row 13 "peak RSS (VmHWM) of the vigil server process through figure 12: $AGENTS12 agents enrolled and attesting" \
			"**$HWM MiB** (VmRSS at the end $RSS MiB)" "-" "-" "< 300 MB" "$v13" "\`grep VmHWM /proc/\$(pidof vigil)/status\` after figure 12"
		[ -z "$cpu" ] || note "- Figure 12: the service used $cpu CPU-seconds in the $DUR12 phase ($(awk -v c="$cpu" -v n="$(j fleet .ok)" 'BEGIN { printf "%.2f", c*1000/n }') ms per attestation), the load generator ${gcpu:-?} s. Errors: $(j fleet '.errors | tostring')."
	else
		stop "$SRV_PID"
		row 12 "$AGENTS12 agents attesting every 5 minutes" "error" "-" "-" "p99 < 100 ms" "ERROR" "\`$CMD_BENCH $A12\`"
	fi
fi
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
MEASURED=$(cut -f1 "$ROWS" | paste -sd, -)
note "- Figures $MEASURED (bench/attest.sh, commit \`${COMMIT:0:12}\`): load average $LOAD0 at the start, $LOAD1 at the end; the service and the load generator ran on the same $NPROC cores, so every rate here is a floor for the service alone."

# --- report ----------------------------------------------------------------
esc() { sed 's/|/\\|/g'; }
{
	while IFS=$'\t' read -r id what v p r t res cmd; do
		printf '| %s | %s | %s | %s | %s | %s | %s | %s |\n' "$id" "$what" "$v" "$p" "$r" "$t" \
			"$( [ "$res" = PASS ] && echo '**PASS**' || { [ "$res" = FAIL ] && echo '**FAIL**' || echo "$res"; } )" \
			"$(printf '%s' "$cmd" | esc)"
	done < "$ROWS"
} > "$W/rows.md"
echo
echo "| fig. | what | Vigil (median) | peer (median) | ratio | target | result | command |"
echo "|---|---|---|---|---|---|---|---|"
cat "$W/rows.md"
echo
cat "$NOTES"

# ATTEST_OUT: replace the rows measured now (and their notes) in a
# BENCHMARKS.md; rows 11–13 measured earlier stay. Rows 11–13 go after the
# other rows, in order.
if [ -n "${ATTEST_OUT:-}" ]; then
	[ -f "$ATTEST_OUT" ] || die "ATTEST_OUT=$ATTEST_OUT: no such file"
	awk -v rows="$W/rows.md" -v notes="$NOTES" '
		BEGIN {
			while ((getline l < rows) > 0) { split(l, f, " "); id = f[2]; fresh[id] = 1; keep[id] = l }
			close(rows)
		}
		/^\| 1[123][a-z]? \|/ { split($0, f, " "); if (!(f[2] in fresh)) keep[f[2]] = $0; next }
		/^- Figures? 1[123]/ {
			if ($0 ~ /^- Figures /) {          # a run summary: kept while it covers a row not measured now
				s = $0; sub(/^- Figures /, "", s); sub(/ .*/, "", s); m = split(s, fs, /[,–]/)
				for (k = 1; k <= m; k++) if (!(fs[k] in fresh)) { oldnote[++on] = $0; break }
			} else { split($0, f, "[ :]"); if (!(f[3] in fresh)) oldnote[++on] = $0 }
			next
		}
		/^\| 14[a-z]? \|/ { line[NR] = $0; next } # bench/gate.sh's rows stay after 11–13
		/^\| [0-9]+[a-z]? \|/ { last = NR }
		{ line[NR] = $0 }
		END {
			n = 0; for (id in keep) ids[++n] = id
			for (i = 2; i <= n; i++) { x = ids[i]; for (j = i - 1; j >= 1 && ids[j] > x; j--) ids[j+1] = ids[j]; ids[j+1] = x }
			for (i = 1; i <= NR; i++) {
				if (!(i in line)) continue
				print line[i]
				if (i == last) for (k = 1; k <= n; k++) print keep[ids[k]]
			}
			for (k = 1; k <= on; k++) print oldnote[k]
			while ((getline l < notes) > 0) print l
		}' "$ATTEST_OUT" > "$W/out.md"
	cp "$W/out.md" "$ATTEST_OUT"
	echo "attest.sh: rows written to $ATTEST_OUT" >&2
fi
