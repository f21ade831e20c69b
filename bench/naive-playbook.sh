#!/bin/sh
# The "naive playbook" baseline (bench/bench.py ttc): what a team would run
# from adnanh/webhook instead of remedyd. For one email ($1): get a token,
# page through the users (1000 per page, the API maximum) until the email
# shows up, suspend that user. No cache, no token reuse, no retries.
set -eu
email=$1
base=$OP_BASE/v1beta1
token=$(curl -sf -u "$OP_CLIENT_ID:$OP_CLIENT_SECRET" -d grant_type=client_credentials \
        "$base/users/oauth2/token" | jq -r .access_token)
page=""
while :; do
        resp=$(curl -sf -G -H "Authorization: Bearer $token" --data-urlencode max_page_size=1000 \
                ${page:+--data-urlencode "page_token=$page"} "$base/accounts/$OP_ACCOUNT/users")
        id=$(printf '%s' "$resp" | jq -r --arg e "$email" \
                '.results[] | select((.email | ascii_downcase) == ($e | ascii_downcase)) | .id' | head -n1)
        [ -n "$id" ] && break
        page=$(printf '%s' "$resp" | jq -r '.next_page_token // empty')
        [ -n "$page" ] || { echo "naive-playbook: $email not found" >&2; exit 1; }
done
curl -sf -X POST -H "Authorization: Bearer $token" "$base/accounts/$OP_ACCOUNT/users/$id:suspend" >/dev/null
