# Helpers for interop .opts files (sourced by run-pair): metrics, CDR and log checks.
# A post_check function in NAME.opts runs after both SIPp instances ended, while vacsd still
# runs. It sees PORT_VACS, PORT_HTTP, SPOOL, WORK, VACS_LOG and these helpers; it returns
# non-zero (after printing why with `say`) to fail the case.

say() { echo "# $CASE: $*"; }

# Prints the /metrics page (empty on error).
metrics() { timeout 5 curl -s "http://127.0.0.1:$PORT_HTTP/metrics" 2>/dev/null; }

# Sum of every sample whose name (with labels) matches the ERE $1, e.g.
# 'vacs_sip_rejected_total\{reason="acl"\}' or 'vacs_sip_rejected_total'. 0 if none.
metric_sum() {
	metrics | grep -E "^$1( |\{)" | awk '{ s += $NF } END { printf "%d\n", s + 0 }'
}

# Waits up to $2 seconds (default 5) until $SPOOL/cdr.jsonl holds at least $1 lines.
cdr_wait() {
	local n=$1 t=$(( ${2:-5} * 10 )) i
	for ((i = 0; i < t; i++)); do
		[ -f "$SPOOL/cdr.jsonl" ] && [ "$(grep -c . "$SPOOL/cdr.jsonl")" -ge "$n" ] && return 0
		sleep 0.1
	done
	say "expected $n CDR line(s) in $SPOOL/cdr.jsonl, found $(grep -c . "$SPOOL/cdr.jsonl" 2>/dev/null || echo none)"
	return 1
}

# Evaluates the jq expression $1 against the last CDR line; fails (and shows the line)
# unless it yields true.
cdr_assert() {
	local line
	line=$(tail -n 1 "$SPOOL/cdr.jsonl" 2>/dev/null)
	if ! command -v jq >/dev/null; then
		say "jq not installed: cannot check $1"
		return 1
	fi
	if [ "$(printf '%s\n' "$line" | jq -c "$1" 2>&1)" != "true" ]; then
		say "CDR check failed: $1"
		say "CDR: $line"
		return 1
	fi
}

# Fails unless a counter matching ERE $1 is at least $2 (default 1); shows the metrics.
metric_at_least() {
	local v
	v=$(metric_sum "$1")
	if [ "$v" -lt "${2:-1}" ]; then
		say "metric $1 = $v, expected >= ${2:-1}; vacs_sip_rejected_total samples:"
		metrics | grep -E '^vacs_sip_rejected' | sed 's/^/#   /'
		return 1
	fi
}

# Counts messages in a SIPp -trace_msg file whose start line matches ERE $2 (received or
# sent), e.g. count_msgs "$WORK/uas.msg" '^INVITE '.
count_msgs() { grep -cE "$2" "$1" 2>/dev/null || true; }
