#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# gen_certs.sh DIR - writes a throwaway CA and a server certificate it signed
# for the mock's TLS mode (mock_upstream --tls-cert DIR/server.pem --tls-key
# DIR/server.key): DIR/ca.pem (the trust anchor a client is given), and the
# server certificate for 127.0.0.1, ::1 and localhost, EC P-256, valid 2 days.
# Test and benchmark fixtures only: the keys are unencrypted and short-lived.
set -euo pipefail
dir=${1:?usage: gen_certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 2 -subj "/CN=tiergate test CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req "${ec[@]}" -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
printf '%s\n' "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost" \
    "basicConstraints=CA:FALSE" "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth" >server.ext
openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
    -extfile server.ext -out server.pem 2>/dev/null
rm -f server.csr server.ext ca.srl
