#!/usr/bin/env bash
# A test PKI for the local stack's nginx: a CA, a host certificate for localhost and a user
# certificate (DN "/DC=org/DC=example/OU=People/CN=Dynamo Dev") to sign in with.
# Usage: deploy/compose/make-test-pki.sh [DIR]   (default: deploy/compose/pki)
# Never use these outside a laptop: the keys are unencrypted and the CA signs anything.
set -euo pipefail

dir=${1:-"$(dirname "${BASH_SOURCE[0]}")/pki"}
mkdir -p "$dir"
cd "$dir"

days=${PKI_DAYS:-30}
user_dn=${PKI_USER_DN:-"/DC=org/DC=example/OU=People/CN=Dynamo Dev"}

openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days "$days" \
    -subj "/CN=Dynamo Local Test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

sign() {  # sign NAME SUBJECT EXTENSIONS
    local name=$1 subject=$2 ext=$3
    printf '%b' "$ext" >"$name.ext"
    openssl req -new -newkey rsa:2048 -nodes -keyout "$name.key" -subj "$subject" \
        -out "$name.csr" 2>/dev/null
    openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial \
        -days "$days" -out "$name.pem" -extfile "$name.ext" 2>/dev/null
    rm -f "$name.csr" "$name.ext"
}

sign server "/CN=localhost" \
    "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n"
sign user "$user_dn" \
    "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n"

# nginx's workers read the keys as the unprivileged nginx user inside the container.
chmod 0644 ./*.pem server.key user.key
chmod 0600 ca.key
echo "test PKI in $dir: ca.pem, server.pem/.key, user.pem/.key (DN $user_dn)" >&2
