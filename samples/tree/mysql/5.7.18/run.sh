#!/bin/sh
# Sample entry point: a real image would start mysqld here.
set -eu
echo "mysql ${MYSQL_VERSION:-unknown} (sample)"
ls /docker-entrypoint-initdb.d
