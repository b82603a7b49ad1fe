#!/usr/bin/env bash
# .ci/services.sh: start and stop the REAL backend servers of the conformance run
# (issue 7), all on 127.0.0.1, each on a free non-default port.
#
#   bash .ci/services.sh start    # installs/builds what is missing, starts, waits until ready
#   . "${CPOD_CI_STATE:-/tmp/cpod-ci-services}/env"   # exports the three CPODTEST_* variables
#   go test ./...                 # now against the real servers
#   bash .ci/services.sh stop     # kills everything, removes the state dir; safe after a failed start
#   bash .ci/services.sh status   # prints the env file and which servers are running
#
# Typical use in .ci/run:
#   trap 'bash .ci/services.sh stop' EXIT
#   bash .ci/services.sh start
#   . "${CPOD_CI_STATE:-/tmp/cpod-ci-services}/env"
#
# Servers:
#   Redis 7        Debian's redis-server (apt-get install when missing), --save '' --appendonly no
#   Redis Cluster  three more redis-server --cluster-enabled yes (masters, no replicas), joined
#                  by redis-cli --cluster create; each uses PORT and PORT+10000 (cluster bus)
#   S3             versitygw v1.8.0 (go install, cached), posix backend on a temp dir, SigV4
#                  and presigned-URL expiry enforced, region us-east-1
#   MongoDB wire   FerretDB v1.24.2 (internal/ferretpg, embeds the ferretdb package) on a
#                  throw-away PostgreSQL 15 cluster (Debian's postgresql, fsync off)
#
# The env file ($CPOD_CI_STATE/env) exports:
#   CPODTEST_REDIS_URL=redis://127.0.0.1:PORT/0
#   CPODTEST_REDIS_ADDRS=127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3   (the cluster; cpodtest prefers it
#                  to CPODTEST_REDIS_URL: unset it for a run on the single Redis)
#   CPODTEST_MONGO_URI=mongodb://127.0.0.1:PORT/
#   CPODTEST_S3_URL=http://ACCESSKEY:SECRETKEY@127.0.0.1:PORT   (keys are [0-9a-z], url-safe)
#
# Settings (environment):
#   CPOD_CI_STATE          state dir: pidfiles, logs, data, env file  (default /tmp/cpod-ci-services)
#   CPOD_CI_CACHE          built binaries, kept between runs          (default /var/cache/cpod-ci)
#   CPOD_CI_READY_TIMEOUT  seconds to wait for each server            (default 60)
# (CPOD_CI_STATE must not contain spaces: it goes into PostgreSQL's option string.)
#
# Needs root (apt-get, and runuser to run PostgreSQL as the postgres user), Go, and the
# Debian and Go module registries the first time. Contacts nothing but loopback otherwise.
# start is idempotent: it first stops whatever an earlier start left behind.
set -euo pipefail

STATE=${CPOD_CI_STATE:-/tmp/cpod-ci-services}
CACHE=${CPOD_CI_CACHE:-/var/cache/cpod-ci}
READY_TIMEOUT=${CPOD_CI_READY_TIMEOUT:-60}
VERSITYGW_VERSION=v1.8.0
MARKER=.cpod-ci-services   # a state dir holds this file; stop removes only such a dir
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

log() { printf 'services.sh: %s\n' "$*" >&2; }

# --- helpers --------------------------------------------------------------------------

# port_in_use PORT: true when a TCP socket on 127.0.0.1 uses PORT.
port_in_use() {
	if command -v ss >/dev/null 2>&1; then
		[[ -n "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]]
	else
		(exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
	fi
}

# free_port: sets PORT to a free port below the ephemeral range, not handed out before.
USED_PORTS=" "
free_port() {
	local p i
	for ((i = 0; i < 500; i++)); do
		p=$((20000 + RANDOM % 12000))
		[[ $USED_PORTS == *" $p "* ]] && continue
		port_in_use "$p" && continue
		USED_PORTS+="$p "
		PORT=$p
		return 0
	done
	log "no free TCP port found"
	return 1
}

# free_cluster_port: sets PORT to a free port whose cluster bus port (PORT+10000) is free
# too, both below the ephemeral range (32768), neither handed out before.
free_cluster_port() {
	local p i
	for ((i = 0; i < 500; i++)); do
		p=$((20000 + RANDOM % 2700))
		[[ $USED_PORTS == *" $p "* || $USED_PORTS == *" $((p + 10000)) "* ]] && continue
		port_in_use "$p" && continue
		port_in_use "$((p + 10000))" && continue
		USED_PORTS+="$p $((p + 10000)) "
		PORT=$p
		return 0
	done
	log "no free TCP port pair for the Redis Cluster found"
	return 1
}

# random_key N: N random lowercase hex characters (url-safe alphanumerics).
random_key() {
	od -An -tx1 -N"$(($1 / 2))" /dev/urandom | tr -d ' \n'
}

# pid_alive PIDFILE NAME: the pid in PIDFILE runs a command containing NAME.
pid_alive() {
	local pid
	[[ -s $1 ]] || return 1
	pid=$(head -n1 "$1")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$2"
}

# wait_ready NAME LOG ALIVE_CMD READY_CMD: polls READY_CMD for up to READY_TIMEOUT seconds;
# fails early when ALIVE_CMD says the process is gone. On failure names the server and
# prints the tail of its log.
wait_ready() {
	local name=$1 logf=$2 alive=$3 ready=$4
	local deadline=$((SECONDS + READY_TIMEOUT)) grace=$((SECONDS + 3))
	until eval "$ready" >/dev/null 2>&1; do
		# the alive check gets a short grace period: daemonizing servers write pidfiles late
		if ((SECONDS >= grace)) && ! eval "$alive" >/dev/null 2>&1; then
			server_failed "$name" "$logf" "exited before it was ready"
			return 1
		fi
		if ((SECONDS >= deadline)); then
			server_failed "$name" "$logf" "did not come up within ${READY_TIMEOUT}s"
			return 1
		fi
		sleep 0.2
	done
	log "$name ready"
}

server_failed() {
	log "ERROR: $1 $3; last lines of $2:"
	if [[ -f $2 ]]; then tail -n 40 "$2" | sed 's/^/    /' >&2; else log "    (no log)"; fi
}

# apt_install PKG...: installs Debian packages; runs apt-get update only when the
# install fails on the lists the machine has.
apt_install() {
	local opts=(-y -q --no-install-recommends -o DPkg::Lock::Timeout=300)
	log "installing $* from Debian"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install "${opts[@]}" "$@" >"$STATE/apt.log" 2>&1; then
		log "apt-get install failed on the current package lists; running apt-get update"
		apt-get update -q -o DPkg::Lock::Timeout=300 >>"$STATE/apt.log" 2>&1
		DEBIAN_FRONTEND=noninteractive apt-get install "${opts[@]}" "$@" >>"$STATE/apt.log" 2>&1 || {
			log "ERROR: apt-get install $* failed; last lines of $STATE/apt.log:"
			tail -n 30 "$STATE/apt.log" | sed 's/^/    /' >&2
			return 1
		}
	fi
}

pg_bindir() {
	local d
	# the newest installed major version
	while read -r d; do
		[[ -x $d/initdb && -x $d/pg_ctl ]] && { echo "$d"; return 0; }
	done < <(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V -r)
	return 1
}

as_postgres() { runuser -u postgres -- "$@"; }

# --- binaries (cached in $CACHE) --------------------------------------------------------

versitygw_bin() { echo "$CACHE/versitygw-$VERSITYGW_VERSION/versitygw"; }

# ferretpg is keyed by its source, go.mod, go.sum and the Go version. cmd_start computes
# it once (FERRETPG_BIN), so an edit of go.mod during a start changes nothing midway.
ferretpg_bin() {
	local key
	key=$({ cat "$REPO"/internal/ferretpg/*.go "$REPO/go.mod" "$REPO/go.sum"; go version; } |
		sha256sum | cut -c1-16)
	echo "$CACHE/ferretpg-$key/ferretpg"
}

build_versitygw() {
	local bin dir tmp
	bin=$(versitygw_bin)
	[[ -x $bin ]] && return 0
	dir=$(dirname "$bin")
	tmp="$dir.tmp.$$"
	rm -rf "$tmp" && mkdir -p "$tmp"
	echo "building versitygw $VERSITYGW_VERSION (cold: about 2 minutes)"
	# outside the project module, so its go.mod and GOFLAGS play no part
	(cd / && GOFLAGS='' GOBIN="$tmp" go install "github.com/versity/versitygw/cmd/versitygw@$VERSITYGW_VERSION")
	rm -rf "$dir" && mv "$tmp" "$dir"
}

build_ferretpg() {
	local bin=$FERRETPG_BIN dir
	[[ -x $bin ]] && return 0
	dir=$(dirname "$bin")
	echo "building internal/ferretpg"
	mkdir -p "$dir.tmp.$$"
	(cd "$REPO" && go build -buildvcs=false -o "$dir.tmp.$$/ferretpg" ./internal/ferretpg)
	rm -rf "$dir" && mv "$dir.tmp.$$" "$dir"
	# drop binaries of older sources
	find "$CACHE" -maxdepth 1 -name 'ferretpg-*' ! -path "$dir" -exec rm -rf {} +
}

build_all() {
	mkdir -p "$CACHE"
	build_ferretpg
	build_versitygw
}

# --- servers ----------------------------------------------------------------------------

start_redis() {
	if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
		apt_install redis-server
	fi
	free_port
	REDIS_PORT=$PORT
	local d=$STATE/redis
	mkdir -p "$d"
	# shellcheck disable=SC2094 # its early errors (bad arguments) go to stdout, the rest to --logfile
	redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --save '' --appendonly no \
		--daemonize yes --pidfile "$d/redis.pid" --logfile "$d/redis.log" --dir "$d" \
		>>"$d/redis.log" 2>&1 || true
	wait_ready redis "$d/redis.log" "pid_alive '$d/redis.pid' redis-server" \
		"[[ \$(redis-cli -h 127.0.0.1 -p $REDIS_PORT ping) == PONG ]]"
}

# cluster_ok PORT: the node on PORT reports cluster_state:ok (all 16384 slots served).
cluster_ok() {
	redis-cli -h 127.0.0.1 -p "$1" cluster info 2>/dev/null | grep -q '^cluster_state:ok'
}

# start_redis_cluster: three masters on loopback (Redis Cluster needs at least three),
# no replicas, no persistence; each node's files are in $STATE/redis-cluster/N.
start_redis_cluster() {
	local n d addrs=() port
	CLUSTER_PORTS=()
	for n in 1 2 3; do
		free_cluster_port
		port=$PORT
		CLUSTER_PORTS+=("$port")
		addrs+=("127.0.0.1:$port")
		d=$STATE/redis-cluster/$n
		mkdir -p "$d"
		# shellcheck disable=SC2094 # early errors go to stdout, the rest to --logfile
		redis-server --bind 127.0.0.1 --port "$port" --save '' --appendonly no \
			--cluster-enabled yes --cluster-config-file "$d/nodes.conf" --cluster-node-timeout 5000 \
			--daemonize yes --pidfile "$d/redis.pid" --logfile "$d/redis.log" --dir "$d" \
			>>"$d/redis.log" 2>&1 || true
	done
	for n in 1 2 3; do
		d=$STATE/redis-cluster/$n
		port=${CLUSTER_PORTS[n - 1]}
		wait_ready "redis cluster node $n" "$d/redis.log" "pid_alive '$d/redis.pid' redis-server" \
			"[[ \$(redis-cli -h 127.0.0.1 -p $port ping) == PONG ]]"
	done
	d=$STATE/redis-cluster
	if ! redis-cli --cluster create "${addrs[@]}" --cluster-replicas 0 --cluster-yes \
		>"$d/create.log" 2>&1; then
		server_failed "redis cluster" "$d/create.log" "redis-cli --cluster create failed"
		return 1
	fi
	for n in 1 2 3; do
		port=${CLUSTER_PORTS[n - 1]}
		wait_ready "redis cluster node $n (cluster_state:ok)" "$d/$n/redis.log" \
			"pid_alive '$d/$n/redis.pid' redis-server" "cluster_ok $port"
	done
	REDIS_CLUSTER_ADDRS=$(IFS=,; echo "${addrs[*]}")
}

start_postgres() {
	local bin d
	bin=$(pg_bindir) || { apt_install postgresql && bin=$(pg_bindir); }
	free_port
	PG_PORT=$PORT
	d=$STATE/pg
	mkdir -p "$d/data" "$d/sock"
	chown -R postgres: "$d"
	chmod 700 "$d/data"
	as_postgres "$bin/initdb" -D "$d/data" -U postgres -A trust -E UTF8 --locale=C --no-sync \
		>"$d/initdb.log" 2>&1 || {
		server_failed postgresql "$d/initdb.log" "initdb failed"
		return 1
	}
	as_postgres "$bin/pg_ctl" -D "$d/data" -l "$d/postgres.log" -W \
		-o "-c listen_addresses=127.0.0.1 -p $PG_PORT -c unix_socket_directories=$d/sock -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
		start >"$d/pg_ctl.log" 2>&1
	wait_ready postgresql "$d/postgres.log" "pid_alive '$d/data/postmaster.pid' postgres" \
		"'$bin/pg_isready' -q -h 127.0.0.1 -p $PG_PORT"
	"$bin/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -v ON_ERROR_STOP=1 \
		-c 'CREATE DATABASE ferretdb' >>"$d/pg_ctl.log" 2>&1 || {
		server_failed postgresql "$d/pg_ctl.log" "CREATE DATABASE ferretdb failed"
		return 1
	}
}

# mongo_ping PORT: sends OP_MSG {ping: 1, $db: "admin"} and checks for ok: 1.0.
# FerretDB answers ping by asking its backend, so this also proves PostgreSQL works.
MONGO_PING_HEX=(
	33000000 01000000 00000000 dd070000 # header: length 51, requestID 1, responseTo 0, OP_MSG
	00000000 00                         # flags, section kind 0
	1e000000                            # BSON document of 30 bytes:
	10 70696e6700 01000000              #   int32 "ping": 1
	02 24646200 06000000 61646d696e00   #   string "$db": "admin"
	00                                  # end of document
)
mongo_ping() {
	local hex fmt="" i reply
	hex=$(printf '%s' "${MONGO_PING_HEX[@]}")
	for ((i = 0; i < ${#hex}; i += 2)); do fmt+="\\x${hex:i:2}"; done
	# shellcheck disable=SC2016 # $1 and $2 expand in the inner bash
	reply=$(timeout 5 bash -c '
		exec 3<>"/dev/tcp/127.0.0.1/$1"
		printf "$2" >&3
		head -c 38 <&3 | od -An -tx1 | tr -d " \n"
	' _ "$1" "$fmt" 2>/dev/null) || return 1
	# "ok\0" followed by the double 1.0
	[[ $reply == *6f6b00000000000000f03f* ]]
}

start_ferretdb() {
	local bin=$FERRETPG_BIN d
	free_port
	MONGO_PORT=$PORT
	d=$STATE/ferretdb
	mkdir -p "$d"
	"$bin" -listen "127.0.0.1:$MONGO_PORT" \
		-postgresql-url "postgres://postgres@127.0.0.1:$PG_PORT/ferretdb" \
		</dev/null >"$d/ferretdb.log" 2>&1 &
	echo $! >"$d/ferretdb.pid"
	wait_ready ferretdb "$d/ferretdb.log" "pid_alive '$d/ferretdb.pid' ferretpg" \
		"mongo_ping $MONGO_PORT"
}

start_versitygw() {
	local bin d
	bin=$(versitygw_bin)
	free_port
	S3_PORT=$PORT
	S3_ACCESS=cpod$(random_key 16)
	S3_SECRET=$(random_key 40)
	d=$STATE/versitygw
	mkdir -p "$d/data"
	ROOT_ACCESS_KEY=$S3_ACCESS ROOT_SECRET_KEY=$S3_SECRET \
		"$bin" --port "127.0.0.1:$S3_PORT" --health /health --quiet posix "$d/data" \
		</dev/null >"$d/versitygw.log" 2>&1 &
	echo $! >"$d/versitygw.pid"
	wait_ready versitygw "$d/versitygw.log" "pid_alive '$d/versitygw.pid' versitygw" \
		"curl -fsS -o /dev/null --max-time 2 http://127.0.0.1:$S3_PORT/health"
}

write_env() {
	cat >"$STATE/env.tmp" <<EOF
# written by .ci/services.sh start; source it: . $STATE/env
export CPODTEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
export CPODTEST_REDIS_ADDRS=$REDIS_CLUSTER_ADDRS
export CPODTEST_MONGO_URI=mongodb://127.0.0.1:$MONGO_PORT/
export CPODTEST_S3_URL=http://$S3_ACCESS:$S3_SECRET@127.0.0.1:$S3_PORT
EOF
	mv "$STATE/env.tmp" "$STATE/env"
}

# --- subcommands ------------------------------------------------------------------------

cmd_start() {
	[[ $(id -u) == 0 ]] || { log "ERROR: start needs root"; return 1; }
	command -v go >/dev/null 2>&1 || { log "ERROR: go not found in PATH"; return 1; }
	cmd_stop quiet
	mkdir -p "$STATE"
	chmod 755 "$STATE"
	touch "$STATE/$MARKER"
	# whatever fails from here on, nothing is left running
	trap 'rc=$?; if ((rc != 0)); then log "start failed; stopping what was started"; cmd_stop quiet || true; fi' EXIT

	# the Go builds (CPU) run while apt and initdb (I/O) do
	local t0=$SECONDS build_pid
	FERRETPG_BIN=$(ferretpg_bin)
	[[ -x $(versitygw_bin) ]] || log "versitygw $VERSITYGW_VERSION not cached: building it (about 2 minutes)"
	[[ -x $FERRETPG_BIN ]] || log "internal/ferretpg not cached: building it"
	build_all >"$STATE/build.log" 2>&1 &
	build_pid=$!

	start_redis
	start_redis_cluster
	start_postgres
	if ! wait "$build_pid"; then
		server_failed "build of versitygw/ferretpg" "$STATE/build.log" "failed"
		return 1
	fi
	start_ferretdb
	start_versitygw
	write_env
	trap - EXIT
	log "all servers ready in $((SECONDS - t0))s; env file: $STATE/env"
	sed -n 's/^export /    /p' "$STATE/env" >&2
}

# stop_pid NAME PIDFILE: TERM, then KILL after 10 s, the process whose pid is in PIDFILE
# (only when it still runs NAME, so a reused pid is left alone).
stop_pid() {
	local name=$1 pidfile=$2 pid i
	pid_alive "$pidfile" "$name" || return 0
	pid=$(head -n1 "$pidfile")
	kill -TERM "$pid" 2>/dev/null || return 0
	for ((i = 0; i < 50; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.2
	done
	log "$name (pid $pid) ignored SIGTERM; killing it"
	kill -KILL "$pid" 2>/dev/null || true
}

cmd_stop() {
	local quiet=${1:-}
	if [[ ! -d $STATE ]]; then
		[[ -n $quiet ]] || log "nothing to stop ($STATE does not exist)"
		return 0
	fi
	if [[ ! -f $STATE/$MARKER ]]; then
		log "ERROR: $STATE is not a services.sh state dir (no $MARKER); not touching it"
		return 1
	fi
	stop_pid versitygw "$STATE/versitygw/versitygw.pid"
	stop_pid ferretpg "$STATE/ferretdb/ferretdb.pid"
	stop_pid redis-server "$STATE/redis/redis.pid"
	local node
	for node in "$STATE"/redis-cluster/*/redis.pid; do
		[[ -e $node ]] && stop_pid redis-server "$node"
	done
	local pgdata=$STATE/pg/data bin
	if [[ -f $pgdata/postmaster.pid ]]; then
		if bin=$(pg_bindir) && as_postgres "$bin/pg_ctl" -D "$pgdata" stop -m immediate -w -t 30 \
			>/dev/null 2>&1; then
			:
		else
			# the postmaster pid is the first line of postmaster.pid
			stop_pid postgres "$pgdata/postmaster.pid"
		fi
	fi
	rm -rf "$STATE"
	[[ -n $quiet ]] || log "stopped; removed $STATE"
}

cmd_status() {
	if [[ -f $STATE/env ]]; then cat "$STATE/env"; else log "no env file at $STATE/env"; fi
	local name pidfile
	while read -r name pidfile; do
		if pid_alive "$STATE/$pidfile" "$name"; then
			echo "$name ($pidfile): running (pid $(head -n1 "$STATE/$pidfile"))"
		else
			echo "$name ($pidfile): not running"
		fi
	done <<-EOF
		versitygw versitygw/versitygw.pid
		ferretpg ferretdb/ferretdb.pid
		redis-server redis/redis.pid
		redis-server redis-cluster/1/redis.pid
		redis-server redis-cluster/2/redis.pid
		redis-server redis-cluster/3/redis.pid
		postgres pg/data/postmaster.pid
	EOF
}

case ${1:-} in
start) cmd_start ;;
stop) cmd_stop ;;
status) cmd_status ;;
*)
	echo "usage: bash .ci/services.sh start|stop|status   (env file: $STATE/env)" >&2
	exit 2
	;;
esac
