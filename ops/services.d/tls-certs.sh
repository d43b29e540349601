# shellcheck shell=bash
# Sourced by ops/services. A test certificate authority and the certificates the TLS
# listeners of `ops/services up --tls` present, all under $TLS_DIR (dev and tests only):
#   ca.pem / ca.key          the CA every landlord TLS client is told to trust
#   server.pem / server.key  CN=localhost, SAN DNS:localhost and IP:127.0.0.1 only, so a
#                            client verifying the name of any other address must fail
#   client.pem / client.key  CN=landlord, for listeners that ask for a client certificate
#   other-ca.pem             a second CA that signed nothing here (a client trusting only it
#                            must refuse every listener)
# Idempotent: kept while the CA is there and the server certificate has 30 days left.

tls_certs() {
  local d=$TLS_DIR
  have openssl || apt_install tls openssl
  mkdir -p "$d"
  if [[ -s $d/ca.pem && -s $d/server.pem && -s $d/client.pem && -s $d/other-ca.pem ]] &&
    openssl x509 -checkend $((30 * 86400)) -noout -in "$d/server.pem" >/dev/null 2>&1; then
    note tls "reused (CA $d/ca.pem)"
    return
  fi
  log "tls: generating a test CA and certificates in $d"
  (
    umask 077
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=landlord test CA" \
      -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=landlord other CA" \
      -keyout "$d/other-ca.key" -out "$d/other-ca.pem" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' >"$d/server.ext"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
      -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
      -days 825 -extfile "$d/server.ext" -out "$d/server.pem" 2>/dev/null
    printf 'extendedKeyUsage=clientAuth\n' >"$d/client.ext"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=landlord" \
      -keyout "$d/client.key" -out "$d/client.csr" 2>/dev/null
    openssl x509 -req -in "$d/client.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
      -days 825 -extfile "$d/client.ext" -out "$d/client.pem" 2>/dev/null
    rm -f "$d"/*.csr "$d"/*.ext
  ) || die "tls: openssl could not generate the test certificates in $d"
  # Certificates are public; the services' own users (postgres, rabbitmq) must read the keys.
  chmod 644 "$d"/*.pem
  chmod 640 "$d"/*.key
  note tls "generated (CA $d/ca.pem)"
}
