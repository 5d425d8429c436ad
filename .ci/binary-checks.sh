#!/usr/bin/env bash
# Runs every command of the compiled binary once on generated input and checks exit codes.
# The EICAR test string is assembled here from parts; it is never stored whole in the repository.
set -u
bin=$1
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
export XDG_CONFIG_HOME=$work/config XDG_STATE_HOME=$work/state
fails=0
expect() { # expected-exit, description, command...
  local want=$1 what=$2; shift 2
  "$@" >"$work/out" 2>&1; local got=$?
  if [ "$got" -eq "$want" ]; then echo "ok   $what"; else echo "FAIL $what (exit $got, wanted $want)"; sed 's/^/     /' "$work/out" | head -20; fails=$((fails+1)); fi
}
e1='X5O!P%@AP[4\PZX54(P^)7CC)7}$'; e2='EICAR-STANDARD-ANTIVIRUS'; e3='-TEST-FILE!$H+H*'
printf '%s%s%s' "$e1" "$e2" "$e3" > "$work/eicar.com"
printf 'From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\nMessage-ID: <1@example.org>\r\n\r\nhello\r\n' > "$work/clean.eml"
b64=$(base64 -w0 "$work/eicar.com")
printf 'From: a@example.org\r\nSubject: bad\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee attachment\r\n--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=eicar.com\r\nContent-Transfer-Encoding: base64\r\n\r\n%s\r\n--b--\r\n' "$b64" > "$work/infected.eml"
{ printf 'From a@example.org Mon Jan  1 00:00:00 2024\n'; tr -d '\r' < "$work/clean.eml"; printf '\nFrom b@example.org Mon Jan  1 00:00:00 2024\n'; tr -d '\r' < "$work/infected.eml"; printf '\n'; } > "$work/box.mbox"

expect 0 "--help"                       "$bin" --help
expect 0 "scan-file clean"              "$bin" scan-file "$work/clean.eml"
expect 1 "scan-file infected"           "$bin" scan-file "$work/infected.eml"
expect 1 "scan-file raw eicar"          "$bin" scan-file "$work/eicar.com"
expect 1 "scan-file --json"             "$bin" scan-file --json "$work/infected.eml" "$work/clean.eml"
expect 2 "scan-file missing file"       "$bin" scan-file "$work/nope.eml"
expect 1 "scan-mbox"                    "$bin" scan-mbox "$work/box.mbox"
expect 1 "scan-mbox --clean-to"         "$bin" scan-mbox --clean-to "$work/cleaned.mbox" "$work/box.mbox"
expect 0 "scan-mbox of the cleaned mbox" "$bin" scan-mbox "$work/cleaned.mbox"
expect 0 "config show"                  "$bin" config show
expect 0 "config engines"               "$bin" config engines
expect 1 "config engines, clamd down"   "$bin" config engines --clamd unix:$work/no-clamd.sock
expect 0 "config path"                  "$bin" config path
expect 0 "config set"                   "$bin" config set action delete
expect 0 "config get"                   "$bin" config get action
expect 0 "config validate"              "$bin" config validate
expect 0 "config ca"                    "$bin" config ca
expect 0 "serve --help"                 "$bin" serve --help
expect 1 "unload with no proxy running" "$bin" unload
[ "$fails" -eq 0 ]
