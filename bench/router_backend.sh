#!/bin/sh
# The static backend of bench/router, run as a paasops instance: writes an
# nginx.conf listening on 127.0.0.1:$PORT (given by paasops) that serves the
# files of WWW with keep-alive limits lifted, then becomes nginx.
# Usage: router_backend.sh WWW DIR WORKERS   (DIR: config, pid and error log)
set -eu
www=$1 dir=$2 workers=$3
: "${PORT:?PORT not set}"
mkdir -p "$dir"
cat >"$dir/nginx-$PORT.conf" <<CONF
worker_processes $workers;
pid $dir/nginx-$PORT.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $dir/client_body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
    default_type text/plain;
    sendfile on;
    tcp_nopush on;
    open_file_cache max=16;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    server {
        listen 127.0.0.1:$PORT reuseport;
        root $www;
    }
}
CONF
exec /usr/sbin/nginx -p "$dir/" -e "$dir/error.log" -c "$dir/nginx-$PORT.conf" -g 'daemon off;'
