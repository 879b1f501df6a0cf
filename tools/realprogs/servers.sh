# shellcheck shell=bash
# Servers, each started in the foreground on loopback ports with a config of
# its own under $WORK, served a fixed workload by an ordinary client (never
# under the shim), listed and dumped while serving (the server and its child
# processes), and shut down the way its documentation says. Without the shim
# and under it: did it start, did it answer the same, did it exit the same.
# Sourced by tools/realprogs.sh.
#
# Each server NAME has srv_NAME_start DIR PORT (runs it in the foreground:
# run in the background here), srv_NAME_ready DIR PORT, srv_NAME_load DIR
# PORT (the workload; its stdout is compared), srv_NAME_stop DIR PORT PID.

# next_port: sets PORT to a loopback port nobody listens on (TCP or UDP),
# from a range of this run's own. In this shell, not in $(...): the counter
# must move.
PORT=$((20000 + ($$ % 400) * 50))
next_port() {
    PORT=$((PORT + 1))
    while ss -Hltun "sport = :$PORT" 2>/dev/null | grep -q .; do PORT=$((PORT + 1)); done
}

# wait_until SECS CMD...: CMD succeeds within SECS.
wait_until() {
    local s=$1 i
    shift
    for ((i = 0; i < s * 10; i++)); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    return 1
}

# PID has exited (a zombie until it is waited for counts as exited).
gone() { ! alive_for "$1" 0; }

# server_pair NAME: the server without the shim, then under it.
server_pair() {
    local name=$1 m port dir pid t0 lp rc loadrc started
    declare -A st ex lo sec
    for m in plain shim; do
        dir=$WORK/srv.$name.$m
        rm -rf "$dir"
        mkdir -p "$dir"
        next_port
        port=$PORT
        rm -f "$WORK/stopping"
        if [ "$m" = shim ]; then
            LD_PRELOAD=$SHIM "srv_${name}_start" "$dir" "$port" >"$dir/stdout" 2>"$dir/stderr" &
        else
            "srv_${name}_start" "$dir" "$port" >"$dir/stdout" 2>"$dir/stderr" &
        fi
        pid=$!
        started=yes
        wait_until 60 "srv_${name}_ready" "$dir" "$port" || started=no
        ! gone "$pid" || started=no
        lp=""
        if [ "$m" = shim ] && [ "$started" = yes ]; then
            lister "$pid" "$WORK/srv.$name.lists" &
            lp=$!
        fi
        t0=$(now)
        loadrc=-
        if [ "$started" = yes ]; then
            loadrc=0
            "srv_${name}_load" "$dir" "$port" >"$WORK/srv.$name.$m.out" 2>"$dir/load.err" || loadrc=$?
        else
            : >"$WORK/srv.$name.$m.out"
        fi
        sec[$m]=$(secs "$t0" "$(now)")
        : >"$WORK/stopping"
        "srv_${name}_stop" "$dir" "$port" "$pid" >/dev/null 2>&1
        wait_until 60 gone "$pid" || { kill -KILL "$pid" 2>/dev/null; ex[$m]="did not stop"; }
        rc=0
        wait "$pid" || rc=$?
        [ -n "${ex[$m]:-}" ] || ex[$m]="exit $rc"
        [ -z "$lp" ] || wait "$lp"
        rm -f "$WORK/stopping"
        st[$m]=$started lo[$m]=$loadrc
    done
    local d="" lists="- - -"
    [ -e "$WORK/srv.$name.lists" ] && lists=$(cat "$WORK/srv.$name.lists")
    [ "${st[plain]}" = yes ] || d="$d did not start without the shim either;"
    [ "${st[shim]}" = yes ] || d="$d did not start under the shim ($(tail -c 200 "$WORK/srv.$name.shim/stderr" | tr '\n' ' '));"
    [ "${lo[plain]}" = "${lo[shim]}" ] || d="$d workload exit ${lo[plain]} without, ${lo[shim]} under it;"
    cmp -s "$WORK/srv.$name.plain.out" "$WORK/srv.$name.shim.out" ||
        d="$d answers differ: $(diff "$WORK/srv.$name.plain.out" "$WORK/srv.$name.shim.out" | grep '^[<>]' | head -3 | tr '\n' ' ');"
    [ "${ex[plain]}" = "${ex[shim]}" ] || d="$d ${ex[plain]} without the shim, ${ex[shim]} under it;"
    local ok fail app
    read -r ok fail app <<<"$lists"
    [ "$ok" = - ] || [ "$fail" -eq 0 ] || d="$d $fail listings/dumps failed ($(cat "$WORK/srv.$name.lists.why"));"
    [ "$ok" = - ] || [ "$ok" -gt 0 ] || d="$d never listed while serving;"
    local secure=""
    [ ! -s "$WORK/srv.$name.lists.secure" ] ||
        secure="; not listed, secure-execution helpers: $(tr '\n' ' ' <"$WORK/srv.$name.lists.secure")"
    if [ -z "$d" ]; then
        record same servers "$name" "${sec[plain]}" "${sec[shim]}" "${ex[shim]}; workload $(wc -l <"$WORK/srv.$name.shim.out") answers alike; $ok listings/dumps, up to $app app threads$secure"
    else
        record DIFF servers "$name" "${sec[plain]}" "${sec[shim]}" "${d# }"
    fi
}

# ---- redis: io-threads on; redis-cli answers, redis-benchmark's rate ----
srv_redis_start() {
    exec redis-server --port "$2" --bind 127.0.0.1 --save '' --appendonly no --dir "$1" \
        --io-threads 2 --io-threads-do-reads yes --daemonize no
}
srv_redis_ready() { [ "$(redis-cli -p "$2" ping)" = PONG ]; }
srv_redis_load() {
    local i
    for ((i = 0; i < 500; i++)); do echo "SET key:$i value-$((i * 7919 % 1000))"; done | redis-cli -p "$2" >/dev/null
    for ((i = 0; i < 500; i += 50)); do echo "GET key:$i"; done | redis-cli -p "$2"
    redis-cli -p "$2" dbsize
    redis-benchmark -p "$2" -n $((QUICK ? 5000 : 50000)) -c 20 --threads 2 -t set,get -q >"$1/bench" 2>&1
}
srv_redis_stop() { redis-cli -p "$2" shutdown nosave; }
redis_rates() {
    tr '\r' '\n' <"$1" 2>/dev/null | awk '/^(SET|GET): .* requests per second/ { r = r (r ? "/" : "") int($2) } END { print r ? r : "-" }'
}

# ---- nginx: 2 workers, a thread pool for file reads (aio threads) ----
srv_nginx_start() {
    local d=$1
    mkdir -p "$d/www"
    for i in $(seq 1 20); do head -c $((i * 10000)) /dev/zero | tr '\0' "$(printf '\\%03o' $((65 + i)))" >"$d/www/f$i"; done
    cat >"$d/nginx.conf" <<EOF
user root;
worker_processes 2;
daemon off;
pid $d/nginx.pid;
error_log stderr;
thread_pool pool threads=4;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $d; proxy_temp_path $d; fastcgi_temp_path $d; uwsgi_temp_path $d; scgi_temp_path $d;
  server { listen 127.0.0.1:$2; root $d/www; sendfile off; aio threads=pool; }
}
EOF
    exec nginx -c "$d/nginx.conf" -e stderr
}
srv_nginx_ready() { curl -sf "http://127.0.0.1:$2/f1" >/dev/null; }
http_load() {
    local i
    for ((i = 0; i < 200; i++)); do
        curl -sf "http://127.0.0.1:$2/f$((i % 20 + 1))" | sha256sum | cut -c1-16
    done | sort | uniq -c
}
srv_nginx_load() { http_load "$@"; }
srv_nginx_stop() { kill -QUIT "$3"; }

# ---- memcached: 4 worker threads ----
srv_memcached_start() { exec memcached -p "$2" -U 0 -l 127.0.0.1 -t 4 -u root; }
srv_memcached_ready() { echo version | socat -t 2 - "TCP:127.0.0.1:$2" | grep -q VERSION; }
srv_memcached_load() {
    local i
    {
        for ((i = 0; i < 300; i++)); do printf 'set k%d 0 0 %d\r\nv%d\r\n' "$i" $((${#i} + 1)) "$i"; done
        for ((i = 0; i < 300; i += 30)); do printf 'get k%d\r\n' "$i"; done
        printf 'quit\r\n'
    } | socat -t 5 - "TCP:127.0.0.1:$2" | tr -d '\r' | sort | uniq -c
}
srv_memcached_stop() { kill -TERM "$3"; }

# ---- haproxy: 2 threads, answers itself ----
srv_haproxy_start() {
    cat >"$1/haproxy.cfg" <<EOF
global
  nbthread 2
defaults
  mode http
  timeout client 10s
  timeout connect 10s
  timeout server 10s
frontend fe
  bind 127.0.0.1:$2
  http-request return status 200 content-type text/plain string "hello from haproxy"
EOF
    exec haproxy -f "$1/haproxy.cfg" -db
}
srv_haproxy_ready() { curl -sf "http://127.0.0.1:$2/" >/dev/null; }
srv_haproxy_load() {
    local i
    for ((i = 0; i < 200; i++)); do curl -sf "http://127.0.0.1:$2/x$i"; echo; done | sort | uniq -c
}
srv_haproxy_stop() { kill -USR1 "$3"; }

# An origin for the proxies: Debian's python3 serving a directory (not
# under the shim), started by the group.
origin_start() {
    ORIGIN_DIR=$WORK/origin
    mkdir -p "$ORIGIN_DIR"
    for i in $(seq 1 20); do head -c $((i * 5000)) /dev/zero | tr '\0' "$(printf '\\%03o' $((97 + i)))" >"$ORIGIN_DIR/f$i"; done
    next_port
    ORIGIN_PORT=$PORT
    /usr/bin/python3 -m http.server "$ORIGIN_PORT" --bind 127.0.0.1 --directory "$ORIGIN_DIR" >/dev/null 2>&1 &
    ORIGIN_PID=$!
    wait_until 20 curl -sf "http://127.0.0.1:$ORIGIN_PORT/f1"
}
origin_stop() { kill "$ORIGIN_PID" 2>/dev/null; wait "$ORIGIN_PID" 2>/dev/null; }
proxy_load() {
    local i
    for ((i = 0; i < 100; i++)); do
        curl -sf -x "http://127.0.0.1:$2" "http://127.0.0.1:$ORIGIN_PORT/f$((i % 20 + 1))" | sha256sum | cut -c1-16
    done | sort | uniq -c
}

# ---- squid: aufs cache (its disk threads) in front of the origin ----
srv_squid_start() {
    local d=$1
    cat >"$d/squid.conf" <<EOF
http_port 127.0.0.1:$2
http_access allow localhost
http_access deny all
cache_effective_user proxy
cache_dir aufs $d/cache 16 4 16
coredump_dir $d
pid_filename $d/squid.pid
access_log none
cache_log stdio:$d/cache.log
shutdown_lifetime 1 seconds
EOF
    # Squid will not run as root: its user (Debian's proxy) owns its files.
    chown -R proxy:proxy "$d"
    # A service name of its own: squid names its shared memory after it.
    squid -n "ks$2" -z -N -f "$d/squid.conf" >/dev/null 2>&1
    exec squid -n "ks$2" -N -f "$d/squid.conf"
}
srv_squid_ready() { curl -sf -x "http://127.0.0.1:$2" "http://127.0.0.1:$ORIGIN_PORT/f1" >/dev/null; }
srv_squid_load() { proxy_load "$@"; }
srv_squid_stop() { kill -TERM "$3"; }

# ---- varnish: in front of the origin ----
srv_varnish_start() { exec varnishd -F -j none -a "127.0.0.1:$2" -b "127.0.0.1:$ORIGIN_PORT" -n "$1/varnish" -s malloc,16m; }
srv_varnish_ready() { srv_squid_ready "$@"; }
srv_varnish_load() {
    local i
    for ((i = 0; i < 100; i++)); do
        curl -sf "http://127.0.0.1:$2/f$((i % 20 + 1))" | sha256sum | cut -c1-16
    done | sort | uniq -c
}
srv_varnish_stop() { kill -TERM "$3"; }

# ---- DNS: unbound (2 threads, local data) and named (2 workers, a zone) ----
dns_load() {
    local i
    for ((i = 0; i < 60; i++)); do dig +short +tries=1 +time=3 -p "$2" @127.0.0.1 "h$((i % 30)).ks.test" A; done | sort | uniq -c
}
srv_unbound_start() {
    local d=$1 i
    {
        printf 'server:\n  interface: 127.0.0.1@%s\n  num-threads: 2\n  do-daemonize: no\n' "$2"
        printf '  chroot: ""\n  username: ""\n  pidfile: "%s/unbound.pid"\n  use-syslog: no\n  logfile: ""\n' "$d"
        printf '  access-control: 127.0.0.0/8 allow\n  local-zone: "ks.test." static\n'
        for ((i = 0; i < 30; i++)); do printf '  local-data: "h%d.ks.test. A 10.0.%d.%d"\n' "$i" $((i / 10)) "$i"; done
        printf 'remote-control:\n  control-enable: no\n'
    } >"$d/unbound.conf"
    exec unbound -d -c "$d/unbound.conf"
}
# dig +short prints its errors on stdout too: an answer is an address.
srv_unbound_ready() { dig +short +tries=1 +time=1 -p "$2" @127.0.0.1 h1.ks.test A | grep -qE '^[0-9.]+$'; }
srv_unbound_load() { dns_load "$@"; }
srv_unbound_stop() { kill -TERM "$3"; }

srv_named_start() {
    local d=$1 i
    {
        # shellcheck disable=SC2016
        printf '$TTL 300\n@ IN SOA ns.ks.test. root.ks.test. 1 3600 600 86400 300\n@ IN NS ns.ks.test.\nns IN A 127.0.0.1\n'
        for ((i = 0; i < 30; i++)); do printf 'h%d IN A 10.1.%d.%d\n' "$i" $((i / 10)) "$i"; done
    } >"$d/ks.test.zone"
    cat >"$d/named.conf" <<EOF
options { directory "$d"; pid-file "$d/named.pid"; listen-on port $2 { 127.0.0.1; }; listen-on-v6 { none; };
  recursion no; dnssec-validation no; };
controls { };
zone "ks.test" { type primary; file "$d/ks.test.zone"; };
EOF
    exec named -g -n 2 -c "$d/named.conf" -u root
}
srv_named_ready() { srv_unbound_ready "$@"; }
srv_named_load() { dns_load "$@"; }
srv_named_stop() { kill -TERM "$3"; }

# ---- mariadb: a fresh data directory, queries, mariadb-admin shutdown ----
srv_mariadb_start() {
    local d=$1
    cp -a "$WORK/mariadb-template" "$d/data"
    exec mariadbd --no-defaults --datadir="$d/data" --socket="$d/sock" --port="$2" --bind-address=127.0.0.1 \
        --user=root --skip-grant-tables --pid-file="$d/mariadb.pid" --log-error="$d/error.log" \
        --innodb-buffer-pool-size=32M --thread-handling=pool-of-threads
}
srv_mariadb_ready() { mariadb-admin --no-defaults --socket="$1/sock" ping; }
srv_mariadb_load() {
    mariadb --no-defaults --socket="$1/sock" -N -e "
      CREATE DATABASE ks; USE ks;
      CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(32)) ENGINE=InnoDB;
      INSERT INTO t SELECT seq, CONCAT('v', seq * 7919 % 1000) FROM seq_1_to_5000;
      SELECT COUNT(*), SUM(id), COUNT(DISTINCT v) FROM t;
      SELECT v, COUNT(*) FROM t GROUP BY v ORDER BY v LIMIT 5;"
}
srv_mariadb_stop() { mariadb-admin --no-defaults --socket="$1/sock" shutdown; }

# ---- rsyslogd: UDP and TCP input, a main queue with worker threads ----
srv_rsyslog_start() {
    local d=$1
    cat >"$d/rsyslog.conf" <<EOF
global(workDirectory="$d")
module(load="imudp" threads="2")
module(load="imtcp")
input(type="imudp" address="127.0.0.1" port="$2")
input(type="imtcp" address="127.0.0.1" port="$2")
main_queue(queue.workerThreads="2")
template(name="msgonly" type="string" string="%msg%\\n")
*.* action(type="omfile" file="$d/out.log" template="msgonly")
EOF
    exec rsyslogd -n -f "$d/rsyslog.conf" -i "$d/rsyslog.pid"
}
srv_rsyslog_ready() { logger -n 127.0.0.1 -P "$2" -T "ready" && wait_until 2 grep -q ready "$1/out.log"; }
srv_rsyslog_load() {
    local i
    for ((i = 0; i < 200; i++)); do logger -n 127.0.0.1 -P "$2" -T "message $i"; done
    wait_until 20 sh -c "[ \$(grep -c '^ *message ' '$1/out.log') -ge 200 ]"
    grep -o 'message [0-9]*' "$1/out.log" | sort | uniq -c | awk '{ print $1 }' | sort | uniq -c
}
srv_rsyslog_stop() { kill -TERM "$3"; }

SERVERS=${SERVERS:-"redis nginx memcached haproxy squid varnish unbound named mariadb rsyslog"}

# What each server needs (the ends group too).
declare -A SRV_NEED=([redis]="redis-server redis-cli redis-benchmark" [nginx]="nginx curl"
    [memcached]="memcached socat" [haproxy]="haproxy curl" [squid]="squid curl"
    [varnish]="varnishd curl" [unbound]="unbound dig" [named]="named dig"
    [mariadb]="mariadbd mariadb-install-db mariadb mariadb-admin" [rsyslog]="rsyslogd logger")

# mariadb_template GROUP: the data directory every mariadbd run copies.
mariadb_template() {
    [ ! -d "$WORK/mariadb-template" ] || return 0
    mariadb-install-db --no-defaults --datadir="$WORK/mariadb-template" --user=root \
        --auth-root-authentication-method=normal >"$WORK/mariadb-install.log" 2>&1 ||
        { record DIFF "$1" mariadb - - "mariadb-install-db failed"; return 1; }
}

group_servers() {
    local s bins
    # Servers that drop root (squid) reach their files through $WORK.
    chmod 755 "$WORK"
    origin_start || record DIFF servers origin - - "the python3 origin server did not start"
    for s in $SERVERS; do
        bins=${SRV_NEED[$s]}
        # shellcheck disable=SC2086
        need_bin servers "$s" $bins || continue
        [ "$s" != mariadb ] || mariadb_template servers || continue
        server_pair "$s"
        [ "$s" != redis ] || record INFO servers "redis-benchmark SET/GET requests/s" \
            "$(redis_rates "$WORK/srv.redis.plain/bench")" "$(redis_rates "$WORK/srv.redis.shim/bench")" \
            "without / with the shim"
    done
    origin_stop
}
