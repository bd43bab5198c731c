#!/usr/bin/env bash
# test-services.sh — make sure the PostgreSQL and Redis the test suite uses
# (internal/testservices) are up. `make test` runs it first.
#
#   PostgreSQL  127.0.0.1:5432, user postgres trusted over TCP, database test
#   Redis       127.0.0.1:6379
#
# Reachable: does nothing and prints nothing. Installed but stopped: starts
# them. Missing: installs them with apt-get (as root, or with sudo -n), then
# starts them. The client tools some tests run (ldapsearch from ldap-utils,
# strace, swaks, curl) and the mail servers the docs/ examples are tested
# with (Dovecot with its LDAP driver, Postfix with its LDAP tables; none of
# them started here) are installed the same way when missing. TOHOST_TEST_POSTGRES (a postgres:// URL) and TOHOST_TEST_REDIS
# (host:port) point the tests at other servers; when set, the script only
# waits for those. TOHOST_TEST_WAIT bounds each wait (seconds, default 60).
# Exits non-zero, saying how to start what is missing, when it cannot.
set -uo pipefail

PG_HOST=127.0.0.1 PG_PORT=5432 PG_USER=postgres PG_DB=test
REDIS_HOST=127.0.0.1 REDIS_PORT=6379
WAIT=${TOHOST_TEST_WAIT:-60}
# Marks the pg_hba.conf lines this script adds, so it adds them once.
HBA_MARK="# tohost test-services"

say() { echo "test-services: $*" >&2; }
have() { command -v "$1" >/dev/null 2>&1; }

# as_root runs a command as root: directly, or through passwordless sudo.
as_root() {
	if [ "$(id -u)" = 0 ]; then
		"$@"
	elif have sudo && sudo -n true 2>/dev/null; then
		sudo -n "$@"
	else
		say "need root for: $*"
		return 1
	fi
}

# wait_for runs a check every half second until it succeeds or WAIT passes.
wait_for() {
	local deadline=$((SECONDS + WAIT))
	until "$@"; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.5
	done
}

# tcp_open: something accepts connections on host port (no client needed).
# shellcheck disable=SC2016 # $0 and $1 expand in the inner shell
tcp_open() {
	timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# ---- PostgreSQL -------------------------------------------------------------

pg_url() { echo "postgres://$PG_USER@$PG_HOST:$PG_PORT/${1:-$PG_DB}?sslmode=disable"; }

# pg_query runs SQL as the test user over TCP, never prompting for a password.
pg_query() { psql -w -X -Atq -d "$(pg_url "$1")" -c "$2" 2>/dev/null; }

pg_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 2; }

# pg_cluster prints "version name" of the cluster to start, main preferred.
pg_cluster() {
	local conf
	for conf in /etc/postgresql/*/main/postgresql.conf /etc/postgresql/*/*/postgresql.conf; do
		[ -f "$conf" ] || continue
		conf=${conf#/etc/postgresql/}
		echo "${conf%%/*} $(basename "$(dirname "$conf")")"
		return 0
	done
	return 1
}

# pg_create_cluster makes a cluster when the server is installed without one.
pg_create_cluster() {
	local version
	version=$(printf '%s\n' /usr/lib/postgresql/*/bin/postgres | cut -d/ -f5 | sort -V | tail -n 1)
	[ -x "/usr/lib/postgresql/$version/bin/postgres" ] || return 1
	say "creating PostgreSQL cluster $version main"
	as_root pg_createcluster "$version" main >/dev/null
}

pg_start() {
	local cluster
	cluster=$(pg_cluster) || { pg_create_cluster && cluster=$(pg_cluster); } || return 1
	say "starting PostgreSQL cluster $cluster"
	# A failure here ("already running": another run, or apt's postinst
	# started it) is judged by the wait that follows.
	# shellcheck disable=SC2086 # $cluster is "version name", two arguments
	as_root pg_ctlcluster --skip-systemctl-redirect $cluster start
}

# pg_trust lets the test user connect over loopback TCP without a password:
# the suite's URL carries none.
# shellcheck disable=SC2086 # $cluster is "version name", two arguments
pg_trust() {
	local cluster hba
	cluster=$(pg_cluster) || return 1
	hba=$(as_root pg_conftool -s $cluster show hba_file 2>/dev/null) || hba=/etc/postgresql/${cluster/ //}/pg_hba.conf
	as_root grep -qF "$HBA_MARK" "$hba" 2>/dev/null && return 1 # added before, and still refused
	say "trusting $PG_USER over loopback TCP in $hba"
	# The first matching line wins, so these go on top.
	as_root sed -i "1i host all $PG_USER 127.0.0.1/32 trust $HBA_MARK\nhost all $PG_USER ::1/128 trust $HBA_MARK" "$hba" &&
		as_root pg_ctlcluster --skip-systemctl-redirect $cluster reload
}

pg_login() { pg_query postgres 'SELECT 1' >/dev/null; }

pg_ensure_db() {
	[ "$(pg_query postgres "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'")" = 1 ] && return 0
	say "creating database $PG_DB"
	pg_query postgres "CREATE DATABASE $PG_DB" >/dev/null || pg_query "$PG_DB" 'SELECT 1' >/dev/null
}

# pg_installed: the server, not just the client (which also lives under
# /usr/lib/postgresql), and Debian's cluster tools.
pg_installed() {
	have pg_isready && have psql && have pg_ctlcluster && compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

ensure_postgres() {
	if have psql; then
		pg_login && pg_ensure_db && return 0
	elif tcp_open "$PG_HOST" "$PG_PORT"; then
		return 0 # up; without psql there is nothing more to check
	fi
	pg_installed || install_packages postgresql || return 1
	if ! pg_ready; then
		pg_start
		wait_for pg_ready || return 1
	fi
	if ! pg_login; then
		pg_trust && wait_for pg_login || return 1
	fi
	pg_ensure_db
}

pg_url_ok() { psql -w -X -Atq -d "$1" -c 'SELECT 1' >/dev/null 2>&1; }

# check_postgres_url only waits for a server given by TOHOST_TEST_POSTGRES.
check_postgres_url() {
	if have psql; then
		wait_for pg_url_ok "$1"
	elif have pg_isready; then
		wait_for pg_isready -q -d "$1" -t 2
	else
		say "neither psql nor pg_isready is installed (apt-get install postgresql-client)"
		return 1
	fi
}

pg_help() {
	cat >&2 <<-EOF
	test-services: PostgreSQL is not usable at $(pg_url) after ${WAIT}s.
	  Start it:   pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start
	  Install it: apt-get update && apt-get install -y postgresql
	  It must trust user $PG_USER over TCP from 127.0.0.1 (pg_hba.conf) and have database $PG_DB,
	  or set TOHOST_TEST_POSTGRES=postgres://user:pass@host:port/db to use another server.
	EOF
}

# ---- Redis ------------------------------------------------------------------

# shellcheck disable=SC2016 # $0 and $1 expand in the inner shell
redis_ping() {
	local host=$1 port=$2 reply
	if have redis-cli; then
		reply=$(timeout 3 redis-cli -h "$host" -p "$port" ping 2>/dev/null)
	else
		reply=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"; printf "PING\r\n" >&3; head -c 5 <&3' "$host" "$port" 2>/dev/null)
	fi
	[ "${reply%$'\r'}" = PONG ]
}

redis_ready() { redis_ping "$REDIS_HOST" "$REDIS_PORT"; }

redis_start() {
	local dir=/var/lib/redis log=/var/log/redis
	if [ "$(id -u)" != 0 ]; then # an unprivileged run keeps its files to itself
		dir=${TMPDIR:-/tmp}/tohost-redis log=$dir
	fi
	mkdir -p "$dir" "$log" || return 1
	say "starting Redis on $REDIS_HOST:$REDIS_PORT"
	redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
		--appendonly no --dir "$dir" --logfile "$log/ci.log" >/dev/null
}

ensure_redis() {
	redis_ready && return 0
	have redis-server || install_packages redis-server || return 1
	redis_start
	wait_for redis_ready
}

redis_help() {
	cat >&2 <<-EOF
	test-services: Redis is not answering PING at ${1:-$REDIS_HOST:$REDIS_PORT} after ${WAIT}s.
	  Start it:   redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
	  Install it: apt-get update && apt-get install -y redis-server
	  or set TOHOST_TEST_REDIS=host:port to use another server.
	EOF
}

# ---- install ----------------------------------------------------------------

# APT_UPDATED is set once apt-get update has run: one per script run.
APT_UPDATED=

# install_packages installs Debian packages; apt's own output goes to a log
# shown only when it fails.
install_packages() {
	local out
	out=$(mktemp)
	say "installing $* with apt-get"
	if { [ -n "$APT_UPDATED" ] || as_root env DEBIAN_FRONTEND=noninteractive apt-get update >"$out" 2>&1; } &&
		APT_UPDATED=1 &&
		as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$@" >>"$out" 2>&1; then
		rm -f "$out"
		return 0
	fi
	cat "$out" >&2
	rm -f "$out"
	say "could not install $*"
	return 1
}

# need_pkg installs Debian package PKG when command CMD is missing; silent
# when it is there.
need_pkg() {
	local cmd=$1 pkg=$2
	have "$cmd" && return 0
	install_packages "$pkg" && have "$cmd" && return 0
	say "the tests need $cmd: apt-get update && apt-get install -y $pkg"
	return 1
}

# need_file is need_pkg for a package that brings no command of its own
# (a plugin): it installs PKG when FILE is missing.
need_file() {
	local file=$1 pkg=$2
	[ -e "$file" ] && return 0
	install_packages "$pkg" && [ -e "$file" ] && return 0
	say "the tests need $file: apt-get update && apt-get install -y $pkg"
	return 1
}

# preseed_postfix answers the question Postfix's package asks on install:
# "No configuration", so that it installs without a prompt and leaves
# /etc/postfix/main.cf alone (the tests bring their own, and run no
# Postfix daemon).
preseed_postfix() {
	have debconf-set-selections || return 0
	echo "postfix postfix/main_mailer_type select No configuration" | as_root debconf-set-selections
}

# ---- main -------------------------------------------------------------------

main() {
	local failed=0
	if [ -n "${TOHOST_TEST_POSTGRES:-}" ]; then
		check_postgres_url "$TOHOST_TEST_POSTGRES" || {
			say "PostgreSQL at TOHOST_TEST_POSTGRES does not accept connections after ${WAIT}s; start that server or unset TOHOST_TEST_POSTGRES"
			failed=1
		}
	else
		ensure_postgres || { pg_help; failed=1; }
	fi
	if [ -n "${TOHOST_TEST_REDIS:-}" ]; then
		local host=${TOHOST_TEST_REDIS%:*} port=${TOHOST_TEST_REDIS##*:}
		host=${host#[} host=${host%]} # [::1]:6379
		wait_for redis_ping "$host" "$port" || {
			redis_help "$TOHOST_TEST_REDIS"
			failed=1
		}
	else
		ensure_redis || { redis_help; failed=1; }
	fi
	# The LDAP tests drive the server with OpenLDAP's own client tools.
	need_pkg ldapsearch ldap-utils || failed=1
	# The durability test watches the directory's system calls with strace.
	need_pkg strace strace || failed=1
	# The backend's delivery tests send mail with swaks (and curl).
	need_pkg swaks swaks || failed=1
	need_pkg curl curl || failed=1
	# docs/dovecot.md and docs/postfix.md are run by integration tests: a
	# private Dovecot (started by the test) and Postfix's postmap.
	# (Both live in /usr/sbin, which a user's PATH may lack: checked by file.)
	need_file /usr/sbin/dovecot dovecot-core || failed=1
	need_file /usr/lib/dovecot/imap dovecot-imapd || failed=1
	need_file /usr/lib/dovecot/modules/auth/libauthdb_ldap.so dovecot-ldap || failed=1
	[ -e /usr/sbin/postmap ] || preseed_postfix
	need_file /usr/sbin/postmap postfix || failed=1
	need_file /usr/lib/postfix/postfix-ldap.so postfix-ldap || failed=1
	if have strace && ! strace -f -o /dev/null true >/dev/null 2>&1; then
		say "strace cannot trace here (is ptrace denied?); the durability test will fail"
	fi
	return $failed
}

main "$@"
