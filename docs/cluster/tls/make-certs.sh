#!/bin/sh
# make-certs.sh DIR NAME HOST [HOST ...]
#
# A private CA for the citybus NATS cluster (made once, in DIR/ca.pem and DIR/ca-key.pem), and a
# certificate for one node signed by it: DIR/NAME.pem and DIR/NAME-key.pem, valid for every HOST
# (a DNS name, a wildcard such as '*.nats-headless', or an IP address). Run it once per node:
#
#   docs/cluster/tls/make-certs.sh ~/citybus-tls citybus-1 nats1.drammen.kommune.no 10.20.0.11
#   docs/cluster/tls/make-certs.sh ~/citybus-tls citybus-2 nats2.drammen.kommune.no 10.20.0.12
#   docs/cluster/tls/make-certs.sh ~/citybus-tls citybus-3 nats3.drammen.kommune.no 10.20.0.13
#
# Each node certificate serves both ends of TLS: the client port (citybus checks the name it
# dialled against HOST) and the routes, where nats-server always demands and checks the peer's
# certificate (so the certificate is for server *and* client authentication).
#
# Keys are EC P-256 and never leave DIR with mode 0600; ca-key.pem belongs on no server at all.
# Needs OpenSSL 1.1.1 or later. This is tested by tests/test_cluster_deploy.py.
set -eu

if [ $# -lt 3 ]; then
    echo "usage: $0 DIR NAME HOST [HOST ...]   (e.g. $0 tls citybus-1 nats1.example.org 10.0.0.11)" >&2
    exit 2
fi
dir=$1
name=$2
shift 2
case $name in
    *[!A-Za-z0-9_-]* | ca | ca-*)
        echo "$0: NAME must be letters, digits, '-' or '_', and not 'ca': got '$name'" >&2
        exit 2
        ;;
esac

umask 077
mkdir -p "$dir"

if [ ! -f "$dir/ca.pem" ]; then
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
        -keyout "$dir/ca-key.pem" -out "$dir/ca.pem" -days 3650 -subj "/CN=citybus NATS CA" \
        -addext "basicConstraints=critical,CA:TRUE" \
        -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "subjectKeyIdentifier=hash" 2>/dev/null
    chmod 644 "$dir/ca.pem"
    echo "made the CA: $dir/ca.pem (key $dir/ca-key.pem: keep it off the servers)"
fi

san=""
for host in "$@"; do
    # An IPv6 address has colons (a DNS name never has), an IPv4 address only digits and dots.
    case $host in
        *:*) kind=IP ;;
        *[!0-9.]*) kind=DNS ;;
        *) kind=IP ;;
    esac
    san="${san:+$san,}$kind:$host"
done

ext=$(mktemp)
trap 'rm -f "$ext" "$dir/$name.csr"' EXIT
printf '%s\n' \
    "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature,keyEncipherment" \
    "extendedKeyUsage=serverAuth,clientAuth" \
    "subjectKeyIdentifier=hash" \
    "authorityKeyIdentifier=keyid,issuer" \
    "subjectAltName=$san" >"$ext"
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -sha256 \
    -keyout "$dir/$name-key.pem" -out "$dir/$name.csr" -subj "/CN=$name" 2>/dev/null
openssl x509 -req -sha256 -in "$dir/$name.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca-key.pem" \
    -set_serial "0x$(openssl rand -hex 16)" -days 825 -extfile "$ext" -out "$dir/$name.pem" 2>/dev/null
chmod 644 "$dir/$name.pem"
echo "made $dir/$name.pem (key $dir/$name-key.pem) for $san"
