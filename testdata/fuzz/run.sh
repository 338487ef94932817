#!/usr/bin/env bash
# Runs every fuzz target of the module (`func FuzzXxx` in a *_test.go file)
# for FUZZTIME each, one after the other, and prints a table: package,
# target, executions, new interesting inputs, result; then the total of
# executions. Exits 1 if any target failed; its crasher is then in
# <package>/testdata/fuzz/<target>/ (the path is printed), where plain
# `go test` replays it: fix the bug, rename the file descriptively and keep
# it as a regression seed.
#
# Environment:
#   FUZZTIME      time (30s) or executions (10000x) per target; default 30s
#   GO            the go command; default go
#   FUZZ          only targets whose "package/target" matches this ERE
#   FUZZPARALLEL  fuzz workers per target; default 2
#   FUZZMINIMIZE  -fuzzminimizetime (how long each new input is minimized,
#                 time taken out of FUZZTIME); default 2s
set -uo pipefail

FUZZTIME=${FUZZTIME:-30s}
GO=${GO:-go}
FUZZ=${FUZZ:-}
FUZZPARALLEL=${FUZZPARALLEL:-2}
FUZZMINIMIZE=${FUZZMINIMIZE:-2s}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 2
logs=$(mktemp -d "${TMPDIR:-/tmp}/skiff-fuzz.XXXXXX")

# package dir <TAB> target, sorted, from every *_test.go outside testdata
# and hidden directories.
mapfile -t targets < <(
	find . \( -name testdata -o -name '.?*' \) -prune -o -name '*_test.go' -print0 |
		xargs -0 grep -H -o '^func Fuzz[A-Za-z0-9_]*' |
		sed -E 's#^\./##; s#/[^/]*_test\.go:func #\t#; s#^[^/\t]*_test\.go:func #.\t#' |
		sort -u
)
if [ "${#targets[@]}" -eq 0 ]; then
	echo "no fuzz targets found under $root" >&2
	exit 2
fi

rows=()
total=0
failed=0
ran=0
for t in "${targets[@]}"; do
	pkg=${t%%$'\t'*}
	name=${t#*$'\t'}
	if [ -n "$FUZZ" ] && ! [[ "$pkg/$name" =~ $FUZZ ]]; then
		continue
	fi
	ran=$((ran + 1))
	log="$logs/${pkg//\//_}.$name.log"
	echo "=== $pkg $name (fuzztime $FUZZTIME)"
	"$GO" test -run '^$' -fuzz "^$name\$" -fuzztime "$FUZZTIME" -fuzzminimizetime "$FUZZMINIMIZE" \
		-parallel "$FUZZPARALLEL" "./$pkg" >"$log" 2>&1
	rc=$?
	# The last progress line: "fuzz: elapsed: 30s, execs: 123 (4/sec), new interesting: 5 (total: 9)".
	last=$(grep -E 'execs: [0-9]+' "$log" | tail -n 1)
	execs=$(sed -nE 's/.*execs: ([0-9]+).*/\1/p' <<<"$last")
	newi=$(sed -nE 's/.*new interesting: ([0-9]+).*/\1/p' <<<"$last")
	execs=${execs:-0}
	newi=${newi:-0}
	total=$((total + execs))
	if [ "$rc" -eq 0 ]; then
		result=ok
	else
		result=FAIL
		failed=$((failed + 1))
		crasher=$(grep -oE 'testdata/fuzz/[^ ]+' "$log" | tail -n 1)
		echo "--- FAIL: $pkg $name (log: $log)"
		grep -vE '^fuzz: elapsed' "$log" | tail -n 40
		if [ -n "$crasher" ]; then
			result="FAIL $pkg/$crasher"
		fi
	fi
	rows+=("$pkg"$'\t'"$name"$'\t'"$execs"$'\t'"$newi"$'\t'"$result")
done

if [ "$ran" -eq 0 ]; then
	echo "no fuzz target matches FUZZ=$FUZZ" >&2
	exit 2
fi

echo
printf '%-20s %-22s %12s %9s  %s\n' package target executions new result
for r in "${rows[@]}"; do
	IFS=$'\t' read -r pkg name execs newi result <<<"$r"
	printf '%-20s %-22s %12s %9s  %s\n' "$pkg" "$name" "$execs" "$newi" "$result"
done
printf '%-20s %-22s %12s\n' total "$ran targets" "$total"
echo "fuzztime $FUZZTIME per target; logs in $logs"
if [ "$failed" -gt 0 ]; then
	echo "$failed of $ran fuzz targets failed" >&2
	exit 1
fi
