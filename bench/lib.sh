# bench/lib.sh: helpers shared by bench/bench-* (sourced, not run): processes, ports, CPU, JSON.
# shellcheck disable=SC2034 # the port and path variables are used by the scripts that source this
# shellcheck shell=bash

BENCH_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BENCH_BIN=$BENCH_ROOT/build/bench
VACSD=${VACSD:-$BENCH_ROOT/build/vacsd}
RESULTS=$BENCH_ROOT/bench/results

# Addresses: vacsd / relays on .1, the carrier side (SIPp UAC, generator leg A) on .2,
# the CUCM side (SIPp UAS, generator leg B) on .3.
ADDR_RELAY=127.0.0.1
ADDR_CARRIER=127.0.0.2
ADDR_CUCM=127.0.0.3

# Ports, all below the kernel's ephemeral range (32768+). BENCH_PORT_BASE moves the
# signalling/control block; the media blocks are fixed (see docs/PERFORMANCE.md).
PB=${BENCH_PORT_BASE:-16000}
PORT_SIP=$((PB + 60))      # vacsd SIP / Kamailio
PORT_UAC=$((PB + 62))      # SIPp carrier UAC
PORT_UAS=$((PB + 64))      # SIPp CUCM UAS
PORT_HTTP=$((PB + 80))     # vacsd HTTP
PORT_CP_UAC=$((PB + 91))   # SIPp control ports (must not collide with other SIPps)
PORT_CP_UAS=$((PB + 92))
PORT_SIPP_MEDIA=$((PB + 100)) # SIPp's own (unused) RTP echo socket
PORT_NG=$((PB + 222))      # rtpengine ng control
PORT_CLI=$((PB + 223))     # rtpengine CLI
GEN_A_BASE=18000           # generator leg A ports: 18000, 18002, ... (on .2)
GEN_B_BASE=21000           # generator leg B ports: 21000, 21002, ... (on .3)
RELAY_PORT_MIN=24000       # relay (vacsd / rtpengine) RTP range
RELAY_PORT_MAX=32766

declare -a BENCH_PIDS=()

log() { printf '%s bench: %s\n' "$(date +%T)" "$*" >&2; }

# start_bg NAME CMD...: runs CMD in the background, output in $RUN/NAME.log; sets BG_PID.
start_bg() {
	local name=$1
	shift
	"$@" >"$RUN/$name.log" 2>&1 &
	BG_PID=$!
	BENCH_PIDS+=("$BG_PID")
}

# stop_pid PID: TERM, then KILL after 3 s; reaps it.
stop_pid() {
	local pid=$1 i
	kill -0 "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null; return 0; }
	kill -TERM "$pid" 2>/dev/null
	for i in $(seq 30); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null
	wait "$pid" 2>/dev/null
	return 0
}

stop_all() {
	local pid
	for pid in "${BENCH_PIDS[@]}"; do
		stop_pid "$pid"
	done
	BENCH_PIDS=()
}

# wait_pid PID SECONDS: waits for PID to exit; returns its status, or 124 on timeout.
wait_pid() {
	local pid=$1 t=$(($2 * 10)) i
	for ((i = 0; i < t; i++)); do
		kill -0 "$pid" 2>/dev/null || { wait "$pid"; return $?; }
		sleep 0.1
	done
	return 124
}

udp_bound() { # ADDR PORT
	ss -Hlun "sport = :$2" 2>/dev/null | grep -q "$1:$2"
}

# free_ports ADDR BASE COUNT: COUNT even UDP ports from BASE up that no process holds on
# ADDR (or on the wildcard address), one per line.
free_ports() {
	ss -Hlun 2>/dev/null | awk -v a="$1" -v base="$2" -v n="$3" '
		{ split($4, p, ":"); port = p[length(p)]; host = substr($4, 1, length($4) - length(port) - 1)
		  if (host == a || host == "0.0.0.0" || host == "*" || host == "[::]") busy[port] = 1 }
		END { for (q = base; n > 0 && q < 65534; q += 2) if (!(q in busy)) { print q; n-- } }'
}

# wait_udp ADDR PORT SECONDS
wait_udp() {
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		udp_bound "$1" "$2" && return 0
		sleep 0.1
	done
	return 1
}

# require_free ADDR:PORT...: fails when another process already holds one of them.
require_free() {
	local ap
	for ap in "$@"; do
		if udp_bound "${ap%:*}" "${ap#*:}"; then
			log "UDP $ap is already in use by another process; set BENCH_PORT_BASE"
			return 1
		fi
	done
}

# wait_log FILE REGEX SECONDS
wait_log() {
	local i
	for ((i = 0; i < $3 * 10; i++)); do
		grep -qE "$2" "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	return 1
}

# cpu_s PID: utime+stime (seconds) of PID and all its descendants (threads included).
cpu_s() {
	local pids=("$1") all=() p c ticks=0
	while [ ${#pids[@]} -gt 0 ]; do
		p=${pids[0]}
		pids=("${pids[@]:1}")
		all+=("$p")
		for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do
			pids+=("$c")
		done
	done
	for p in "${all[@]}"; do
		# fields after the last ')': state is $1, utime $12, stime $13
		t=$(sed 's/.*) //' /proc/"$p"/stat 2>/dev/null | awk '{print $12 + $13}')
		ticks=$((ticks + ${t:-0}))
	done
	awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f", t / hz }'
}

# host_busy_pct SECONDS: share of the whole machine's CPU busy over SECONDS (from /proc/stat).
host_busy_pct() {
	local a b
	a=$(head -1 /proc/stat)
	sleep "$1"
	b=$(head -1 /proc/stat)
	printf '%s\n%s\n' "$a" "$b" | awk '{ t = 0; for (i = 2; i <= 9; i++) t += $i; idle = $5 + $6 }
		NR == 1 { t0 = t; i0 = idle } NR == 2 { dt = t - t0; printf "%.0f", dt ? 100 * (dt - (idle - i0)) / dt : 0 }'
}

# wait_idle NAME: the machine is shared (other jobs may run); waits up to BENCH_IDLE_WAIT
# seconds (default 120) for it to be under BENCH_IDLE_PCT% busy (default 10) before a
# measurement, and records NAME_host_busy_before_pct.
wait_idle() {
	local name=$1 busy waited=0 max=${BENCH_IDLE_WAIT:-120} lim=${BENCH_IDLE_PCT:-10}
	while :; do
		busy=$(host_busy_pct 1)
		[ "$busy" -le "$lim" ] && break
		if [ "$waited" -ge "$max" ]; then
			log "the machine is still ${busy}% busy after ${max} s: measuring anyway (figures suffer)"
			break
		fi
		[ "$waited" -eq 0 ] && log "the machine is ${busy}% busy with other work: waiting (up to ${max} s)"
		waited=$((waited + 1))
	done
	fig "${name}_host_busy_before_pct" "$busy"
}

machine_string() {
	local model cores
	model=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
	cores=$(nproc)
	printf '%s, %s cores, %s MiB RAM, Linux %s' "$model" "$cores" \
		"$(awk '/MemTotal/ {printf "%d", $2/1024}' /proc/meminfo)" "$(uname -r)"
}

# JSON: figures are collected as `"name": number` lines in $FIGS, then written flat.
fig() { # NAME VALUE
	printf '"%s": %s\n' "$1" "$2" >>"$FIGS"
}

# fig_obj '{"a": 1, "b": 2}': adds every member of a one-line flat object.
fig_obj() {
	printf '%s\n' "$1" | sed 's/^ *{//; s/} *$//' | tr ',' '\n' | sed 's/^ *//' | grep -v '^$' >>"$FIGS"
}

# fig_get NAME: the value collected for NAME (empty if none).
fig_get() {
	sed -n "s/^\"$1\": //p" "$FIGS" | tail -1
}

# write_json FILE COMMAND
write_json() {
	local out=$1 cmd=$2
	{
		printf '{\n'
		printf '  "machine": "%s",\n' "$(machine_string)"
		printf '  "command": "%s",\n' "$cmd"
		printf '  "run_epoch_s": %s' "$(date +%s)"
		sed 's/^/  /' "$FIGS" | while IFS= read -r l; do printf ',\n%s' "$l"; done
		printf '\n}\n'
	} >"$out.tmp" && mv "$out.tmp" "$out"
}

# ratio A B: A/B with 3 decimals, or -1 when either is missing or B is 0.
ratio() {
	awk -v a="$1" -v b="$2" 'BEGIN { if (a == "" || b == "" || b + 0 == 0) print -1; else printf "%.3f", a / b }'
}

# vacsd_conf FILE SPOOL_DIR: a vacsd configuration for the bench (carrier on .2, CUCM on .3,
# DIDs +52551234 2000..2999 routed to CUCM extension 2000..2999).
vacsd_conf() {
	cat >"$1" <<EOC
log = { level = "warn"; };
sip = { address = "$ADDR_RELAY"; port = $PORT_SIP; };
media = { address = "$ADDR_RELAY"; port_min = $RELAY_PORT_MIN; port_max = $RELAY_PORT_MAX;
          workers = 2; rtp_timeout = 60; max_sessions = 4096; };
http = { address = "$ADDR_RELAY"; port = $PORT_HTTP; };
spool = { dir = "$2"; };
trunks = (
  { name = "carrier"; type = "carrier"; transport = "udp";
    nodes = ( { host = "$ADDR_CARRIER"; port = $PORT_UAC; priority = 1; } );
    acl = [ "$ADDR_CARRIER" ];
    numbering = { country_code = "52"; national_length = 10; international_prefix = "00";
                  egress = "plus_e164"; };
    rel100 = false; },
  { name = "cucm"; type = "cucm"; transport = "udp";
    nodes = ( { host = "$ADDR_CUCM"; port = $PORT_UAS; priority = 1; } );
    acl = [ "$ADDR_CUCM" ];
    numbering = { country_code = "52"; strip_prefix = "9"; national_length = 10;
                  egress = "plus_e164"; };
    session_expires = 1800; min_se = 1800; options_interval = 0; rel100 = false; }
);
routes = (
  { name = "in"; from = "carrier"; match = "^\\\\+52551234(2[0-9]{3})\$"; to = "cucm";
    rewrite = "\\\\1"; }
);
EOC
}

# start_vacsd CONF NAME: starts vacsd (log $RUN/NAME.log), waits for "vacsd ready"; sets
# VACSD_PID.
start_vacsd() {
	local lf=$RUN/$2.log
	if [ ! -x "$VACSD" ]; then
		log "$VACSD is not built"
		return 1
	fi
	start_bg "$2" "$VACSD" --config "$1"
	VACSD_PID=$BG_PID
	# "vacsd ready" is logged at info level; at log level warn readiness is seen on
	# /readyz (200) once SIP is bound
	local i ready=0
	for ((i = 0; i < 100; i++)); do
		if grep -q 'vacsd ready' "$lf" 2>/dev/null ||
			{ udp_bound "$ADDR_RELAY" "$PORT_SIP" &&
				[ "$(curl -s -o /dev/null -w '%{http_code}' -m 1 \
					"http://$ADDR_RELAY:$PORT_HTTP/readyz")" = 200 ]; }; then
			ready=1
			break
		fi
		kill -0 "$VACSD_PID" 2>/dev/null || break
		sleep 0.1
	done
	if [ $ready = 0 ]; then
		log "vacsd did not get ready within 10 s; log: $lf"
		tail -20 "$lf" >&2
		stop_pid "$VACSD_PID"
		return 1
	fi
}

# ---- stores and peers of the control-plane benches (bench-api, bench-dialer) ----

# pg_start: a private PostgreSQL under $RUN/pg (tests/db/pg-ctl); sets BENCH_PG (its dir)
# and BENCH_PG_CONN (conninfo). stop_stores removes it.
BENCH_PG="" BENCH_REDIS=""
pg_start() {
	BENCH_PG=$("$BENCH_ROOT/tests/db/pg-ctl" init "$RUN/pg" 2>"$RUN/pg-init.log") ||
		{ log "pg-ctl init failed"; return 1; }
	"$BENCH_ROOT/tests/db/pg-ctl" start "$BENCH_PG" >/dev/null ||
		{ log "PostgreSQL did not start"; return 1; }
	BENCH_PG_CONN=$("$BENCH_ROOT/tests/db/pg-ctl" conninfo "$BENCH_PG")
}

# redis_start: a private redis-server under $RUN/redis; sets BENCH_REDIS_URL.
redis_start() {
	BENCH_REDIS=$("$BENCH_ROOT/tests/db/redis-ctl" start "$RUN/redis" 2>"$RUN/redis.log") ||
		{ log "Redis did not start"; return 1; }
	BENCH_REDIS_URL=$("$BENCH_ROOT/tests/db/redis-ctl" url "$BENCH_REDIS")
}

stop_stores() {
	[ -n "$BENCH_PG" ] && "$BENCH_ROOT/tests/db/pg-ctl" destroy "$BENCH_PG" >/dev/null 2>&1
	[ -n "$BENCH_REDIS" ] && "$BENCH_ROOT/tests/db/redis-ctl" destroy "$BENCH_REDIS" >/dev/null 2>&1
	BENCH_PG="" BENCH_REDIS=""
}

# emu_start: the VAPI emulator (tests/peers/vapi-emu) with an empty scenario, key
# $VACS_BENCH_VAPI_KEY; sets EMU_PORT.
emu_start() {
	BUILD="$BENCH_ROOT/build" "$BENCH_ROOT/tests/peers/build-vapi-emu" >"$RUN/emu-build.log" 2>&1 ||
		{ log "cannot build the VAPI emulator"; return 1; }
	echo '{"actions": []}' >"$RUN/scenario.json"
	start_bg emu "$BENCH_ROOT/build/peers/vapi-emu" --port 0 --scenario "$RUN/scenario.json" \
		--report "$RUN/emu.json" --key "$VACS_BENCH_VAPI_KEY" "$@"
	EMU_PORT=""
	local i
	for ((i = 0; i < 50; i++)); do
		EMU_PORT=$(sed -n 's/^vapi-emu listening on 127.0.0.1:\([0-9]*\).*/\1/p' "$RUN/emu.log")
		[ -n "$EMU_PORT" ] && return 0
		sleep 0.1
	done
	log "the emulator did not start"
	return 1
}

# busy_uas_start: a SIPp UAS on the carrier's address answering every INVITE 486 at once
# (an outbound call that costs no VAPI call).
busy_uas_start() {
	cat >"$RUN/busy-uas.xml" <<'XML'
<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="busy">
  <recv request="INVITE"/>
  <send><![CDATA[
      SIP/2.0 486 Busy Here
      [last_Via:]
      [last_From:]
      [last_To:];tag=[pid]SIPpTag01[call_number]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
  <recv request="ACK"/>
</scenario>
XML
	start_bg busy-uas sipp -sf "$RUN/busy-uas.xml" -i "$ADDR_CARRIER" -p "$PORT_UAC" -nd \
		-cp "$PORT_CP_UAS"
	wait_udp "$ADDR_CARRIER" "$PORT_UAC" 5 || { log "the busy UAS did not start"; return 1; }
}
