#!/bin/sh
# Lints man pages: fails on any groff warning (-ww) and on non-ASCII bytes
# (write \(em, \(->, \(dq ... instead). Usage: check-man.sh PAGE...
set -u
if ! command -v groff >/dev/null 2>&1; then
        echo "check-man.sh: groff not found (Debian: groff-base, see scripts/debian-packages.txt)" >&2
        exit 1
fi
status=0
for page in "$@"; do
        out=$(LC_ALL=C.UTF-8 groff -man -ww -z -Tutf8 "$page" 2>&1)
        if [ -n "$out" ]; then
                printf '%s\n' "$out" >&2
                status=1
        fi
        if LC_ALL=C grep -n '[^[:print:][:space:]]' "$page" >&2; then
                echo "$page: non-ASCII bytes above (use groff escapes)" >&2
                status=1
        fi
done
[ "$status" -eq 0 ] && echo "man pages OK: $*"
exit "$status"
