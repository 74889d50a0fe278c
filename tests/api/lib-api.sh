# lib-api.sh: shared set-up of the tests/api suites: a private PostgreSQL, a webhook
# receiver, vacsd with the /v1 API, and a SIPp call through it. Source it from bash after
# setting SUITE (the work directory's name). Defines functions; starts nothing on source.
HERE_API=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE_API/../interop/lib-vacs.sh"
WORK=$BUILD_DIR/test-work/$SUITE
rm -rf "$WORK"
mkdir -p "$WORK"
PIDS=()
PGDIR=""
api_cleanup() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null; done
	vacs_stop
	[ -n "$PGDIR" ] && "$VACS_ROOT/tests/db/pg-ctl" destroy "$PGDIR" >/dev/null 2>&1
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null; done
}

# pg_start: a private PostgreSQL; sets PGDIR and exports VACS_TEST_PG (its conninfo).
pg_start() {
	PGDIR=$(mktemp -d "${TMPDIR:-/tmp}/vacs-pg.XXXXXX")
	"$VACS_ROOT/tests/db/pg-ctl" init "$PGDIR" >/dev/null &&
		"$VACS_ROOT/tests/db/pg-ctl" start "$PGDIR" >/dev/null || return 1
	VACS_TEST_PG=$("$VACS_ROOT/tests/db/pg-ctl" conninfo "$PGDIR")
	export VACS_TEST_PG
}
# sql QUERY: one psql call, unaligned, tuples only.
sql() { psql "$VACS_TEST_PG" -XAtq -c "$1" 2>&1; }

# recv_start NAME: starts tests/peers/hook-recv; sets RECV_PORT, log in $WORK/NAME.jsonl.
recv_start() {
	rm -f "$WORK/$1.port"
	python3 "$VACS_ROOT/tests/peers/hook-recv" "$WORK/$1.port" "$WORK/$1.jsonl" &
	PIDS+=($!)
	wait_for 5000 test -s "$WORK/$1.port" || return 1
	RECV_PORT=$(cat "$WORK/$1.port")
	touch "$WORK/$1.jsonl"
}

# api METHOD PATH [BODY]: curl to vacsd with the key; prints "CODE BODY" (one line).
API_KEY=key-$RANDOM$RANDOM$RANDOM
export VACS_TEST_API_KEY=$API_KEY
api() {
	local out code
	if [ $# -ge 3 ]; then
		out=$(curl -sS --max-time 10 -X "$1" -H "Authorization: Bearer $API_KEY" \
			-H 'Content-Type: application/json' --data-binary "$3" \
			-w '\n%{http_code}' "http://127.0.0.1:$P_HTTP$2")
	else
		out=$(curl -sS --max-time 10 -X "$1" -H "Authorization: Bearer $API_KEY" \
			-w '\n%{http_code}' "http://127.0.0.1:$P_HTTP$2")
	fi
	code=${out##*$'\n'}
	echo "$code ${out%$'\n'*}" | tr '\n' ' '
	echo
}

# ok NAME COND-RESULT [DIAG]: prints a TAP line.
tap() { if [ "$2" = 0 ]; then echo "ok $1"; else echo "not ok $1${3:+ ($3)}"; fi; }

# place_call HOLD_MS: one call carrier -> vacsd -> CUCM with SIPp; 0 when both ends passed.
place_call() {
	local hold=$1
	sed -e "s/EXPECT_USER/2001/" -e "s/HOLD_MS/0/" "$VACS_ROOT/tests/interop/ops/uas-expect.xml" >"$WORK/uas.xml"
	sed -e "s/HOLD_MS/$hold/" "$VACS_ROOT/tests/interop/ops/uac-call.xml" >"$WORK/uac.xml"
	local SIPP=(sipp -m 1 -nd -trace_err -timeout 30s -timeout_error -max_recv_loops 1000)
	rm -f "$WORK/uas.rc" "$WORK/uac.rc"
	(cd "$WORK" && timeout 40 "${SIPP[@]}" -sf uas.xml -i 127.0.0.3 -p $P_CUCM >uas.out 2>&1; echo $? >uas.rc) &
	PIDS+=($!)
	sleep 0.3
	(cd "$WORK" && timeout 40 "${SIPP[@]}" -sf uac.xml -i 127.0.0.2 -p $P_CAR -mp $((BASE + 10)) \
		-s 5512342001 127.0.0.1:$P_SIP >uac.out 2>&1; echo $? >uac.rc)
	wait_for 10000 test -s "$WORK/uas.rc"
	[ "$(cat "$WORK/uac.rc" 2>/dev/null)" = 0 ] && [ "$(cat "$WORK/uas.rc" 2>/dev/null)" = 0 ]
}

# start_vacs TOP_EXTRA [ROUTE_EXTRA]: ports, config with the store and API key, vacsd.
start_vacs() {
	BASE=$(pick_port_base 120) || return 1
	P_SIP=$BASE P_HTTP=$((BASE + 1)) P_CAR=$((BASE + 2)) P_CUCM=$((BASE + 3))
	vacs_write_conf "$WORK/vacs.conf" sip_port=$P_SIP http_port=$P_HTTP media_min=$((BASE + 20)) \
		media_max=$((BASE + 119)) spool="$WORK/spool" carrier_port=$P_CAR cucm_port=$P_CUCM \
		http_extra='api_key_env = "VACS_TEST_API_KEY";' \
		top_extra="store = { postgres_env = \"VACS_TEST_PG\"; }; $1" route_in_extra="${2:-}" || return 1
	vacs_start "$WORK" "$WORK/vacs.conf" 15000 || return 1
	wait_for 10000 vacs__pg_up
}
vacs__pg_up() { sql "SELECT 1 FROM schema_migrations WHERE version = 5" | grep -q 1; }
