#!/usr/bin/env bash
# The chatdr demo (`make demo`): builds the binaries, starts the two-site lab
# on 127.0.0.1 with its chat simulators writing, then runs a planned failover
# and a failback through the real CLI, and proves that every message the chat
# servers saw acknowledged survived both. Exits non-zero when a step fails or
# a single acknowledged message is missing. Leaves the lab running.
#
# Environment: LAB_DIR (default .lab), BIN (default bin), MAKE (default make).
set -euo pipefail

LAB_DIR=${LAB_DIR:-.lab}
BIN=${BIN:-bin}
MAKE=${MAKE:-make}
POOL=pchat.chatdr.lab
CHATDR=$BIN/chatdr
T0=$(date +%s)

say() { printf '\n== %s\n' "$*"; }
elapsed() { echo "$(($(date +%s) - T0))s"; }
die() {
	printf '\ndemo FAILED: %s\n' "$*" >&2
	printf 'The lab is left running for inspection: %s lab status --dir %s; logs in %s/logs; stop it with: make demo-down\n' "$CHATDR" "$LAB_DIR" "$LAB_DIR" >&2
	exit 1
}
# json_int FIELD: the integer value of "FIELD" in the JSON on standard input.
json_int() { sed -n 's/^ *"'"$1"'": *\([0-9][0-9]*\).*/\1/p' | head -n1; }
# run_id FILE: the run id the failover/failback output in FILE names.
run_id() { grep -o 'run-[0-9][0-9]*' "$1" | head -n1; }

say "make build"
"$MAKE" --no-print-directory build BIN="$BIN"

if [ -f "$LAB_DIR/lab.json" ]; then
	say "a lab from an earlier demo is in $LAB_DIR: removing it (make demo-down)"
	"$CHATDR" lab down --dir "$LAB_DIR" --purge
fi

say "chatdr lab up --dir $LAB_DIR"
"$CHATDR" lab up --dir "$LAB_DIR" | tee "$LAB_DIR.env"
set -a
eval "$(grep ^export "$LAB_DIR.env")"
set +a
export CHATDR_CONTROLLER CHATDR_TLS_DIR
VIEWER=(env CHATDR_IDENTITY=viewer)
OPERATOR=(env CHATDR_IDENTITY=operator)

say "waiting until the chat servers' messages flow"
deadline=$(($(date +%s) + 60))
while :; do
	acked=$("$CHATDR" lab messages --dir "$LAB_DIR" -o json 2>/dev/null | json_int acknowledged || true)
	if [ "${acked:-0}" -ge 20 ]; then
		echo "$acked messages acknowledged so far"
		break
	fi
	[ "$(date +%s)" -lt "$deadline" ] || die "no chat message acknowledged within 60s (see $LAB_DIR/logs/RTCCHAT.*.log)"
	sleep 0.5
done

say "chatdr fleet status"
"${VIEWER[@]}" "$CHATDR" fleet status

say "chatdr preflight --pool $POOL --for failover"
if "$CHATDR" preflight --help >/dev/null 2>&1; then
	"${VIEWER[@]}" "$CHATDR" preflight --pool "$POOL" --for failover || die "preflight found the pool not ready for a failover"
else
	echo "(this build has no 'chatdr preflight' yet: skipped)"
fi

out=$(mktemp)
trap 'rm -f "$out"' EXIT

say "chatdr failover --pool $POOL --mode planned --yes --wait"
t=$(date +%s)
"${OPERATOR[@]}" "$CHATDR" failover --pool "$POOL" --mode planned --yes --wait 2>&1 | tee "$out" ||
	die "the failover did not succeed (chatdr run show $(run_id "$out"))"
failover_s=$(($(date +%s) - t))
failover_run=$(run_id "$out")

say "chatdr fleet status (failed over: the pool uses the backup site)"
"${VIEWER[@]}" "$CHATDR" fleet status

say "chatdr lab messages (after the failover)"
"$CHATDR" lab messages --dir "$LAB_DIR"

say "chatdr run ack $failover_run"
"${OPERATOR[@]}" "$CHATDR" run ack "$failover_run"

say "chatdr failback --pool $POOL --yes --wait"
t=$(date +%s)
"${OPERATOR[@]}" "$CHATDR" failback --pool "$POOL" --yes --wait 2>&1 | tee "$out" ||
	die "the failback did not succeed (chatdr run show $(run_id "$out"))"
failback_s=$(($(date +%s) - t))
failback_run=$(run_id "$out")

say "chatdr run ack $failback_run"
"${OPERATOR[@]}" "$CHATDR" run ack "$failback_run"

say "chatdr lab messages (after the failback)"
json=$("$CHATDR" lab messages --dir "$LAB_DIR" -o json)
echo "$json"
acked=$(json_int acknowledged <<<"$json")
present=$(json_int present <<<"$json")
missing=$(json_int missing <<<"$json")
state=$(sed -n 's/^ *"pool_state": *"\([^"]*\)".*/\1/p' <<<"$json")

echo
echo "The lab keeps running. Point your shell at it with:"
echo "  eval \"\$(grep ^export $LAB_DIR.env)\"; export PATH=\$PWD/$BIN:\$PATH"
echo "Stop it with: make demo-down"
echo
if [ "$state" != Normal ] || [ -z "$acked" ] || [ "$acked" -eq 0 ] || [ "$missing" != 0 ] || [ "$present" != "$acked" ]; then
	die "pool $state: $acked messages acknowledged, $present survived, $missing missing"
fi
echo "demo OK in $(elapsed): failover $failover_run ${failover_s}s, failback $failback_run ${failback_s}s; pool $state;" \
	"$acked messages acknowledged, all $present survived, 0 missing"
