# lib-baresip.sh: headless baresip 1.0.0 phones for interop tests and the demo.
# Source after lib-vacs.sh (uses wait_for, now_us, vacs_tool). Functions only.
#
# A phone NAME lives in $BS_DIR/NAME: config, accounts, rec/ (sndfile dumps),
# baresip.log, events.log (one ctrl_tcp JSON message per line, prefixed with the
# wall-clock time "SECONDS.MILLIS"), ctl.fifo (commands to bctl), pid.
#
#   bs_start NAME OPTIONS...        start a phone (see below); 0 when its ctrl port answers
#   bs_cmd NAME COMMAND [PARAMS]    send a ctrl_tcp command ("dial sip:...", "hangup")
#   bs_dial NAME URI / bs_hangup NAME
#   bs_count NAME TYPE              how many events of TYPE arrived so far
#   bs_wait NAME TYPE TIMEOUT_MS [N=1]   wait until at least N events of TYPE arrived
#   bs_wait_answer NAME TIMEOUT_MS [PID]  wait for CALL_ESTABLISHED; give up early on
#                                   CALL_CLOSED or when PID exits
#   bs_event_time NAME TYPE [N=1]   wall-clock time (SECONDS.MILLIS) of the Nth TYPE event
#   bs_last_event NAME TYPE         the last TYPE event line (JSON)
#   bs_rec NAME dec|enc             newest dump-*-dec.wav / -enc.wav of the phone
#   bs_stop NAME / bs_stop_all      SIGTERM, bounded wait, SIGKILL
#
# What baresip 1.0.0 (Debian baresip-core) needs, found by experiment on this machine:
# - `sip_listen IP:P` binds SIP UDP and TCP on IP:P and TLS on IP:P+1 (TLS is bound even
#   without sip_certificate). Two phones need port spacing of at least 2.
# - RTP does NOT follow sip_listen. The address written into SDP (c=/o=) and Contact is
#   the "local network address", by default the first address of the default interface
#   (here eth0's 192.0.2.2 — not loopback!). `net_interface IP` accepts an IP literal
#   ("Binding to interface or IP address '127.0.0.2'") and makes SDP say that IP.
#   `net_interface lo` fails ("net: lo: could not get IPv4 address (No such device)",
#   baresip exits), so give the IP, not the interface name.
# - RTP/RTCP sockets always bind 0.0.0.0 (src/stream.c: "we listen on all interfaces");
#   `rtp_ports A-B` picks the range. Hence RTP towards 127.0.0.1 leaves with SOURCE
#   127.0.0.1, not the SDP address: a B2BUA that latches or checks the RTP source sees
#   127.0.0.1:port while the SDP said 127.0.0.2:port.
# - ctrl_tcp alone knows almost no commands: `dial`, `hangup`, `accept` come from
#   menu.so ("command not found (dial)" without it). `statmode_default off` stops menu's
#   once-a-second status line on stderr. There is no `quit` command in 1.0.0: stop with
#   SIGTERM.
# - ctrl_tcp serves ONE TCP connection; a new one replaces the old (which stops getting
#   events). So one bctl per phone stays connected for the phone's life, fed by a FIFO.
# - Incoming requests are matched to an account by Request-URI user: first the
#   generated Contact user, then the AOR user (src/ua.c uag_find), else 404. So the agent
#   phone's AOR is sip:2001@... to take INVITE sip:2001@..., and the carrier phone's AOR
#   user is the E.164 number vacsd dials (+525598765432).
# - With answermode=auto there is no CALL_INCOMING event; the callee's first events are
#   CALL_REMOTE_SDP (offer), CALL_LOCAL_SDP (answer), CALL_ESTABLISHED, CALL_RTPESTAB.
#   The caller gets CALL_RINGING on 180, CALL_ESTABLISHED on 200, CALL_CLOSED at the end
#   ("param" carries the reason, e.g. "Connection reset by user").
# - No `aufile` player in 1.0: `module sndfile.so` + `snd_path DIR` writes
#   dump-<YYYY-mm-dd-HH-MM-SS>-dec.wav (received, decoded; written as packets are
#   decoded, so a gap in RTP is a gap in the file, not silence) and -enc.wav (sent);
#   names have 1 s resolution, so use one rec dir per phone run. aubridge is the sink.
# - aufile reads the whole source WAV at call start and stops at its end (the source
#   reports "end of file"): make tone files longer than the longest call.
# - `mediaenc=srtp-mand` on the account: SDES, RTP/SAVP, AES_CM_128_HMAC_SHA1_80; without
#   mediaenc the phone offers/answers plain RTP/AVP.
# - TLS: `sip_certificate FILE` (key + cert in one PEM) and `sip_cafile FILE`; dial
#   `sip:user@host:port;transport=tls`.

BS_DIR=${BS_DIR:-/tmp/bs.$$}
declare -gA BS_FD=() BS_PID=() BS_BCTL=()

# bs_start NAME --ip IP --sip-port P --ctrl-port C --wav FILE --aor URI
#          [--rtp-ports A-B] [--srtp] [--cert PEM] [--cafile PEM] [--codecs PCMU]
#          [--answer auto|manual|early] [--acc-extra ';k=v'] [--sip-trace]
#          (--sip-trace: baresip -s, every SIP message in baresip.log)
bs_start() {
	local name=$1
	shift
	local ip="" sport="" cport="" wav="" aor="" rtp="" srtp="" cert="" cafile=""
	local codecs=PCMU answer=auto extra="" trace=""
	while [ $# -gt 0 ]; do
		case $1 in
		--ip) ip=$2; shift 2 ;;
		--sip-port) sport=$2; shift 2 ;;
		--ctrl-port) cport=$2; shift 2 ;;
		--wav) wav=$2; shift 2 ;;
		--aor) aor=$2; shift 2 ;;
		--rtp-ports) rtp=$2; shift 2 ;;
		--srtp) srtp=";mediaenc=srtp-mand"; shift ;;
		--cert) cert=$2; shift 2 ;;
		--cafile) cafile=$2; shift 2 ;;
		--codecs) codecs=$2; shift 2 ;;
		--answer) answer=$2; shift 2 ;;
		--acc-extra) extra=$2; shift 2 ;;
		--sip-trace) trace=-s; shift ;;
		*) echo "bs_start: unknown option $1" >&2; return 1 ;;
		esac
	done
	local d="$BS_DIR/$name" bctl
	bctl=$(vacs_tool bctl) || return 1
	rm -rf "$d"
	mkdir -p "$d/rec"
	{
		echo "# baresip 1.0.0 test phone '$name' (generated by lib-baresip.sh)"
		printf '%-20s %s\n' \
			poll_method epoll \
			sip_listen "$ip:$sport" \
			net_interface "$ip" \
			call_local_timeout 30 \
			call_max_calls 4 \
			audio_player "aubridge,$name" \
			audio_source "aufile,$wav" \
			audio_alert "aubridge,$name" \
			rtp_timeout 0 \
			module_path /usr/lib/baresip/modules \
			module g711.so \
			module g722.so \
			module srtp.so \
			module aufile.so \
			module aubridge.so \
			module sndfile.so \
			module_app account.so \
			module_app menu.so \
			module_app ctrl_tcp.so \
			statmode_default off \
			snd_path "$d/rec" \
			ctrl_tcp_listen "127.0.0.1:$cport"
		[ -n "$rtp" ] && printf '%-20s %s\n' rtp_ports "$rtp"
		[ -n "$cert" ] && printf '%-20s %s\n' sip_certificate "$cert"
		[ -n "$cafile" ] && printf '%-20s %s\n' sip_cafile "$cafile"
	} >"$d/config"
	echo "<$aor>;regint=0;answermode=$answer;audio_codecs=$codecs$srtp$extra" >"$d/accounts"

	baresip $trace -f "$d" </dev/null >"$d/baresip.log" 2>&1 &
	BS_PID[$name]=$!
	echo "${BS_PID[$name]}" >"$d/pid"
	mkfifo "$d/ctl.fifo"
	# The reader must open the FIFO before we open it for writing (open blocks until both
	# ends exist); bctl retries its TCP connect while baresip starts (up to 5 s).
	"$bctl" -T -c 5000 "127.0.0.1:$cport" <"$d/ctl.fifo" >"$d/events.log" 2>"$d/bctl.err" &
	BS_BCTL[$name]=$!
	local fd
	exec {fd}>"$d/ctl.fifo"
	BS_FD[$name]=$fd
	# Ready when ctrl_tcp answers a harmless command.
	bs_cmd "$name" reginfo
	if ! wait_for 6000 grep -q '"response":true' "$d/events.log"; then
		echo "# baresip '$name' did not answer on ctrl_tcp 127.0.0.1:$cport; log tail:" >&2
		tail -n 15 "$d/baresip.log" "$d/bctl.err" 2>/dev/null | sed 's/^/#   /' >&2
		return 1
	fi
}

bs_cmd() {
	local name=$1
	shift
	local fd=${BS_FD[$name]:-}
	[ -n "$fd" ] || { echo "bs_cmd: no phone $name" >&2; return 1; }
	printf '%s\n' "$*" >&"$fd"
}
bs_dial() { bs_cmd "$1" dial "$2"; }
bs_hangup() { bs_cmd "$1" hangup; }

bs_count() {
	local n
	n=$(grep -c "\"type\":\"$2\"" "$BS_DIR/$1/events.log" 2>/dev/null)
	echo "${n:-0}"
}
bs__atleast() { (($(bs_count "$1" "$2") >= $3)); }
bs_wait() { wait_for "$3" bs__atleast "$1" "$2" "${4:-1}"; }

# bs_wait_answer NAME TIMEOUT_MS [PID]: 0 once the phone's call is established; 1 as soon
# as it closes instead (rejected, refused), process PID (the B2BUA) exits, or time is up.
bs__settled() {
	bs__atleast "$1" CALL_ESTABLISHED 1 || bs__atleast "$1" CALL_CLOSED 1 ||
		{ [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; }
}
bs_wait_answer() {
	wait_for "$2" bs__settled "$1" "${3:-}"
	bs__atleast "$1" CALL_ESTABLISHED 1
}

bs_event_time() {
	grep "\"type\":\"$2\"" "$BS_DIR/$1/events.log" 2>/dev/null | sed -n "${3:-1}p" | cut -d' ' -f1
}
bs_last_event() {
	grep "\"type\":\"$2\"" "$BS_DIR/$1/events.log" 2>/dev/null | tail -n 1 | cut -d' ' -f2-
}

bs_rec() {
	ls -t "$BS_DIR/$1/rec/"dump-*-"$2".wav 2>/dev/null | head -n 1
}

bs_stop() {
	local name=$1 pid=${BS_PID[$1]:-} fd=${BS_FD[$1]:-} b=${BS_BCTL[$1]:-}
	if [ -n "$pid" ]; then
		kill -TERM "$pid" 2>/dev/null
		wait_for 3000 vacs__gone "$pid" || kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	fi
	[ -n "$fd" ] && exec {fd}>&-
	if [ -n "$b" ]; then
		wait_for 1000 vacs__gone "$b" || kill -TERM "$b" 2>/dev/null
		wait "$b" 2>/dev/null
	fi
	unset "BS_PID[$name]" "BS_FD[$name]" "BS_BCTL[$name]"
	return 0
}

bs_stop_all() {
	local n
	for n in "${!BS_PID[@]}"; do bs_stop "$n"; done
}

# bs_tone FILE HZ [SECONDS=60]: an 8 kHz mono 16-bit sine at a quarter of full scale.
bs_tone() { # FILE HZ [SECONDS [RATE]]: baresip 1.0's aufile does not resample, so a
	# wideband call needs a file at the codec's rate.
	[ -s "$1" ] || sox -n -r "${4:-8000}" -c 1 -b 16 "$1" synth "${3:-60}" sine "$2" vol 0.25
}
