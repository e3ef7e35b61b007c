#!/usr/bin/env bash
# Runs every fuzz target of the module (func FuzzXxx(f *testing.F) in a test
# file built for this platform) for FUZZTIME each, one after another: `go
# test -fuzz` takes one target of one package per run. Inputs that make a
# target fail are written by the go tool to <package>/testdata/fuzz/FuzzXxx/
# and are listed at the end: fix the code and commit them as regression
# seeds (`go test ./...`, and so `make test`, runs them).
#
#   FUZZTIME          time per target (default 30s)
#   FUZZMINIMIZETIME  time to minimize an interesting input (default 5s;
#                     go's 60s would stall targets whose inputs are large)
#   FUZZ_ONLY         run only the targets whose "package Name" matches this
#                     extended regexp
#   FUZZFLAGS         extra flags for go test (e.g. -parallel 1)
#   FUZZ_LIST=1       only list the targets
set -euo pipefail

GO=${GO:-go}
FUZZTIME=${FUZZTIME:-30s}
FUZZMINIMIZETIME=${FUZZMINIMIZETIME:-5s}
FUZZ_ONLY=${FUZZ_ONLY:-}
read -r -a extra <<<"${FUZZFLAGS:-}"

cd "$(dirname "$0")/.."

targets=()
while read -r pkg file; do
	while read -r name; do
		[ -n "$name" ] && targets+=("$pkg $name")
	done < <(sed -nE 's/^func (Fuzz[A-Za-z0-9_]*)\(f \*testing\.F\).*/\1/p' "$file")
done < <($GO list -f '{{$p := .ImportPath}}{{$d := .Dir}}{{range .TestGoFiles}}{{$p}} {{$d}}/{{.}}{{"\n"}}{{end}}{{range .XTestGoFiles}}{{$p}} {{$d}}/{{.}}{{"\n"}}{{end}}' ./...)

if [ -n "$FUZZ_ONLY" ]; then
	selected=()
	for t in "${targets[@]}"; do
		if [[ $t =~ $FUZZ_ONLY ]]; then selected+=("$t"); fi
	done
	targets=("${selected[@]}")
fi
if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz: no fuzz target found" >&2
	exit 1
fi

if [ "${FUZZ_LIST:-}" = 1 ]; then
	printf '%s\n' "${targets[@]}"
	exit 0
fi
echo "fuzz: ${#targets[@]} targets, ${FUZZTIME} each"
failed=()
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "=== $pkg $name"
	if ! $GO test -run '^$' -fuzz "^${name}\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZETIME" "${extra[@]}" "$pkg"; then
		failed+=("$t")
	fi
done

new=$(git status --porcelain --untracked-files=all -- '*/testdata/fuzz/*' 2>/dev/null || true)
if [ -n "$new" ]; then
	echo "fuzz: corpus files not committed (inputs that failed: fix the code, commit them as seeds):"
	echo "$new"
fi
if [ ${#failed[@]} -gt 0 ]; then
	echo "fuzz: ${#failed[@]} of ${#targets[@]} targets failed:"
	printf '  %s\n' "${failed[@]}"
	exit 1
fi
echo "fuzz: all ${#targets[@]} targets ran for ${FUZZTIME} without a failure"
