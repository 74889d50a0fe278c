# lib-vacs.sh: shell helpers for interop tests and the demo: ports, bounded waits, vacsd, certs.
# Source it from bash (set -u safe). It defines functions only; nothing runs on source.
#
#   VACS_ROOT     the repository root (set by the caller or derived from this file)
#   BUILD         build directory (default build, relative to VACS_ROOT or absolute);
#                 vacsd is $BUILD_DIR/vacsd
#   vacs_tool N   path of test tool N ($BUILD_DIR/tools/N; compiled standalone into
#                 $BUILD_DIR/tools when make has not built it yet: the tools need no libvacs)

VACS_ROOT=${VACS_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BUILD=${BUILD:-build}
# The build directory as an absolute path (BUILD may be relative to the repository root).
case $BUILD in /*) BUILD_DIR=$BUILD ;; *) BUILD_DIR=$VACS_ROOT/$BUILD ;; esac

# Microseconds since the epoch, from bash's clock (no fork).
now_us() { local t=$EPOCHREALTIME; echo "${t/./}"; }

# wait_for TIMEOUT_MS CMD...: runs CMD every 50 ms until it succeeds (0) or the time is up (1).
wait_for() {
	local deadline=$(($(now_us) + $1 * 1000))
	shift
	while :; do
		"$@" && return 0
		(($(now_us) >= deadline)) && return 1
		sleep 0.05
	done
}

# Path of a test tool, building it from tests/tools/NAME.c if make has not.
vacs_tool() {
	local name=$1 bin="$BUILD_DIR/tools/$1" src="$VACS_ROOT/tests/tools/$1.c"
	if [ ! -x "$bin" ] || { [ -f "$src" ] && [ "$src" -nt "$bin" ]; }; then
		mkdir -p "$(dirname "$bin")"
		cc -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -o "$bin" "$src" -lm >&2 || return 1
	fi
	echo "$bin"
}

# range_free BASE SPAN: true when no TCP/UDP socket on this machine uses a local port in
# BASE..BASE+SPAN-1 (one `ss` call).
range_free() {
	local used
	used=$(ss -Hantu 2>/dev/null | awk '{print $5}' | sed -n 's/.*:\([0-9]*\)$/\1/p' |
		awk -v lo="$1" -v hi=$(($1 + $2)) '$1 >= lo && $1 < hi' | head -n 1)
	[ -z "$used" ]
}

# pick_port_base SPAN: prints a base port B such that B..B+SPAN-1 are all free.
# Bases are drawn in 20000..32000, below Linux's ephemeral range (32768+), so clients'
# automatic ports do not land in our block later.
pick_port_base() {
	local span=$1 try base
	for try in $(seq 1 40); do
		base=$((20000 + (RANDOM * 32768 + RANDOM) % 12000))
		base=$((base - base % 10))
		range_free "$base" "$span" && { echo "$base"; return 0; }
	done
	return 1
}

# gen_test_pki DIR: a throw-away CA and certificates for loopback peers.
#   DIR/ca.pem, DIR/ca.key            test CA
#   DIR/vacsd/agent.pem               key + cert for IP 127.0.0.1 (sofia-sip's layout)
#   DIR/vacsd/cafile.pem              the CA (sofia-sip trusts this file)
#   DIR/peer-127.0.0.2.pem            key + cert for IP 127.0.0.2 (baresip sip_certificate)
gen_test_pki() {
	local d=$1 ip
	mkdir -p "$d/vacsd"
	(
		set -e
		cd "$d"
		openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 3 \
			-subj "/CN=VACS interop test CA" \
			-addext "basicConstraints=critical,CA:TRUE" \
			-addext "keyUsage=critical,keyCertSign,cRLSign"
		for ip in 127.0.0.1 127.0.0.2 127.0.0.3; do
			openssl req -newkey rsa:2048 -nodes -keyout "k-$ip.key" -out "r-$ip.csr" \
				-subj "/CN=$ip"
			printf '%s\n' "subjectAltName=IP:$ip" "basicConstraints=CA:FALSE" \
				"keyUsage=digitalSignature,keyEncipherment" \
				"extendedKeyUsage=serverAuth,clientAuth" >"ext-$ip"
			openssl x509 -req -in "r-$ip.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
				-out "c-$ip.pem" -days 3 -extfile "ext-$ip"
			cat "k-$ip.key" "c-$ip.pem" >"peer-$ip.pem"
		done
		cp peer-127.0.0.1.pem vacsd/agent.pem
		cp ca.pem vacsd/cafile.pem
	) >"$d/openssl.log" 2>&1
}

# vacs_write_conf FILE KEY=VALUE...: a vacsd config for the two-trunk loopback topology.
# Keys (defaults in brackets): sip_port, tls_port [0], cert_dir [""], media_min, media_max,
# http_port, spool, carrier_port (the carrier peer's SIP port), carrier_host [127.0.0.2],
# carrier_transport [udp], carrier_srtp [optional], carrier_acl ["127.0.0.2"] (libconfig
# list body), cucm_port, cucm_host [127.0.0.3], cucm_transport [udp], cucm_srtp [off],
# log_level [unset = vacsd's default], carrier_codecs ['"PCMU", "PCMA"'] (list body),
# route_in_extra (settings added to the carrier -> CUCM route, e.g. 'record = true;'),
# route_in_to [cucm] ("ai" for the assistant), vapi_url (adds a vapi group: that base URL,
# the key from $VACS_TEST_VAPI_KEY, assistant "asst-vacs-test"), vapi_timeout [3000] ms.
vacs_write_conf() {
	local file=$1 kv
	shift
	local sip_port="" tls_port=0 cert_dir="" media_min="" media_max="" http_port="" spool=""
	local carrier_port="" carrier_host=127.0.0.2 carrier_transport=udp carrier_srtp=optional
	local carrier_acl='"127.0.0.2"' cucm_port="" cucm_host=127.0.0.3 cucm_transport=udp
	local cucm_srtp=off log_level="" carrier_codecs='"PCMU", "PCMA"' route_in_extra=""
	local route_in_to=cucm vapi_url="" vapi_timeout=3000 vapi_extra="" http_extra="" top_extra=""
	for kv in "$@"; do
		case ${kv%%=*} in
		sip_port | tls_port | cert_dir | media_min | media_max | http_port | spool | \
			carrier_port | carrier_host | carrier_transport | carrier_srtp | carrier_acl | \
			cucm_port | cucm_host | cucm_transport | cucm_srtp | log_level | carrier_codecs | \
			route_in_extra | route_in_to | vapi_url | vapi_timeout | vapi_extra | http_extra | \
			top_extra)
			local -n ref=${kv%%=*}
			ref=${kv#*=}
			unset -n ref
			;;
		*)
			echo "vacs_write_conf: unknown key ${kv%%=*}" >&2
			return 1
			;;
		esac
	done
	local vapi_group=""
	[ -n "$vapi_url" ] && vapi_group="vapi = { api_url = \"$vapi_url\"; key_env = \"VACS_TEST_VAPI_KEY\"; assistant_id = \"asst-vacs-test\"; connect_timeout = $vapi_timeout; $vapi_extra };"
	# Single-quoted so the backslashes reach libconfig as written ("\\+" is a regex "\+").
	local re_in='^\\+52551234(2[0-9]{3})$' re_out='^\\+52[0-9]{10}$' rw_in='\\1'
	{
		echo "# generated by tests/interop/lib-vacs.sh"
		[ -n "$log_level" ] && echo "log = { level = \"$log_level\"; };"
		cat <<EOF
sip = { address = "127.0.0.1"; port = $sip_port; tls_port = $tls_port; tls_cert_dir = "$cert_dir"; };
media = { address = "127.0.0.1"; port_min = $media_min; port_max = $media_max; };
http = { address = "127.0.0.1"; port = $http_port; $http_extra };
$top_extra
spool = { dir = "$spool"; };
$vapi_group
trunks = (
  { name = "carrier"; type = "carrier"; transport = "$carrier_transport";
    nodes = ( { host = "$carrier_host"; port = $carrier_port; priority = 1; } );
    acl = [ $carrier_acl ];
    numbering = { country_code = "52"; international_prefix = "00"; national_length = 10; egress = "plus_e164"; };
    srtp = "$carrier_srtp"; dtmf_pt = 101; codecs = [ $carrier_codecs ]; },
  { name = "cucm"; type = "cucm"; transport = "$cucm_transport";
    nodes = ( { host = "$cucm_host"; port = $cucm_port; priority = 1; } );
    acl = [ "$cucm_host" ];
    numbering = { country_code = "52"; strip_prefix = "9"; national_length = 10; egress = "plus_e164"; };
    srtp = "$cucm_srtp"; session_expires = 1800; min_se = 1800; options_interval = 0; }
);
routes = (
  { name = "in"; from = "carrier"; match = "$re_in"; to = "$route_in_to"; rewrite = "$rw_in"; $route_in_extra },
  { name = "out"; from = "cucm"; match = "$re_out"; to = "carrier"; rewrite = ""; }
);
EOF
	} >"$file"
}

# vacs_start DIR CONF [TIMEOUT_MS=10000]: starts $BUILD/vacsd with CONF, output in
# DIR/vacsd.log, and waits (bounded) for the line containing "vacsd ready".
# Sets VACS_PID. Returns 1 (and prints the log tail) if it exits or never gets ready.
VACS_PID=""
vacs_start() {
	local dir=$1 conf=$2 tmo=${3:-10000} bin="$BUILD_DIR/vacsd"
	mkdir -p "$dir"
	if [ ! -x "$bin" ]; then
		echo "# vacs_start: $bin not built" >&2
		return 1
	fi
	"$bin" --config "$conf" >"$dir/vacsd.log" 2>&1 &
	VACS_PID=$!
	wait_for "$tmo" vacs__ready "$dir/vacsd.log"
	if ! grep -qs 'vacsd ready' "$dir/vacsd.log" || ! vacs_alive; then
		if vacs_alive; then
			echo "# vacsd did not get ready within ${tmo} ms; log tail:" >&2
		else
			echo "# vacsd exited before it was ready; log tail:" >&2
		fi
		tail -n 20 "$dir/vacsd.log" | sed 's/^/#   /' >&2
		vacs_stop
		return 1
	fi
}
vacs__ready() {
	grep -qs 'vacsd ready' "$1" && return 0
	kill -0 "$VACS_PID" 2>/dev/null || return 0 # exited: stop waiting, caller checks
	return 1
}

# True while the vacsd started by vacs_start runs.
vacs_alive() { [ -n "$VACS_PID" ] && kill -0 "$VACS_PID" 2>/dev/null; }

# vacs_stop: SIGTERM, up to 5 s for a clean exit, then SIGKILL. Prints nothing; sets
# VACS_EXIT to the exit status (or "killed") for callers that check shutdown.
VACS_EXIT=""
vacs_stop() {
	[ -n "$VACS_PID" ] || return 0
	local st killed=""
	if kill -0 "$VACS_PID" 2>/dev/null; then
		kill -TERM "$VACS_PID" 2>/dev/null
		if ! wait_for 5000 vacs__gone "$VACS_PID"; then
			kill -KILL "$VACS_PID" 2>/dev/null
			killed=1
		fi
	fi
	wait "$VACS_PID" 2>/dev/null
	st=$?
	VACS_EXIT=${killed:+killed}
	VACS_EXIT=${VACS_EXIT:-$st}
	VACS_PID=""
}
vacs__gone() { ! kill -0 "$1" 2>/dev/null; }

# vacs_metric_sum HTTP_PORT ERE: sum of every sample whose metric name matches ERE
# (anchored, labels ignored), or "" when /metrics cannot be fetched.
vacs_metric_sum() {
	local body
	body=$(curl -fsS --max-time 2 "http://127.0.0.1:$1/metrics" 2>/dev/null) || return 1
	awk -v re="^($2)$" '
		/^#/ { next }
		{ n = $1; sub(/\{.*/, "", n); if (n ~ re) s += $NF }
		END { printf "%d\n", s }' <<<"$body"
}

# sip_garbage DIR LOCAL_IP LOCAL_PORT VACS_IP VACS_PORT: writes malformed SIP datagrams
# into DIR (one file each) and prints their names. None shares a Call-ID with a real call.
sip_garbage() {
	local d=$1 lip=$2 lport=$3 vip=$4 vport=$5 i
	mkdir -p "$d"
	local hdr="Via: SIP/2.0/UDP $lip:$lport;branch=z9hG4bK-junk-%s\r
Max-Forwards: 70\r
From: <sip:+525598765432@$lip>;tag=junk%s\r
To: <sip:+525512342001@$vip:$vport>\r
Call-ID: junk-%s@$lip\r
CSeq: 1 INVITE\r
Contact: <sip:+525598765432@$lip:$lport>\r
"
	local sdp="v=0\r
o=- 1 1 IN IP4 $lip\r
s=-\r
c=IN IP4 $lip\r
t=0 0\r
m=audio 40000 RTP/AVP 0\r
a=rtpmap:0 PCMU/8000\r
"
	# 1. truncated INVITE: stops in the middle of a header line.
	printf "INVITE sip:+525512342001@$vip:$vport SIP/2.0\r\n$hdr" 1 1 1 | head -c 150 >"$d/01-truncated"
	# 2. Content-Length larger than the body that follows.
	{
		printf "INVITE sip:+525512342001@$vip:$vport SIP/2.0\r\n$hdr" 2 2 2
		printf 'Content-Type: application/sdp\r\nContent-Length: 4000\r\n\r\n'
		printf "$sdp"
	} >"$d/02-content-length-long"
	# 3. Content-Length that is not a number.
	{
		printf "INVITE sip:+525512342001@$vip:$vport SIP/2.0\r\n$hdr" 3 3 3
		printf 'Content-Type: application/sdp\r\nContent-Length: -12x\r\n\r\n'
		printf "$sdp"
	} >"$d/03-content-length-bad"
	# 4. An INVITE with 5,000 extra header lines (about 50 kB, still one datagram).
	{
		printf "INVITE sip:+525512342001@$vip:$vport SIP/2.0\r\n$hdr" 4 4 4
		for ((i = 0; i < 5000; i++)); do printf 'X%d: y\r\n' "$i"; done
		printf 'Content-Length: 0\r\n\r\n'
	} >"$d/04-5000-headers"
	# 5. Random bytes, and 6. a request line with no headers at all.
	head -c 700 /dev/urandom >"$d/05-random"
	printf 'INVITE sip:\x01\xff@ SIP/9.9\r\n\r\n' >"$d/06-bad-request-line"
	ls "$d"/0*
}
