#!/usr/bin/env bash
# Rebuild every probe and run it on the real Linux 6.12 oracle kernel, then compare with the
# transcript stored beside it (lines starting with INFO carry addresses and are not compared).
# Usage: ORACLE=/path/to/oracle oracle/probes/run.sh [probe-name...]
# Needs the oracle built once: ../shared/oracle/build.sh $ORACLE (see ../shared/oracle/README.md).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
ORACLE=${ORACLE:?set ORACLE to the oracle build folder}
src=$ORACLE/linux-source-6.12
out=$(mktemp -d)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=($(cd "$here" && ls *.c | sed 's/\.c$//'))
status=0
for n in "${names[@]}"; do
	gcc -static -O2 -I"$src/usr/include" -I"$src/drivers/iommu/iommufd" -o "$out/$n" "$here/$n.c"
	(cd "$out" && "$ORACLE/run-in-vm.sh" "./$n") > "$out/$n.txt" 2>&1 || true
	if diff <(grep -v '^INFO' "$here/$n.out.txt") <(grep -v '^INFO' "$out/$n.txt") > "$out/$n.diff"; then
		echo "$n: same answers as the stored transcript"
	else
		echo "$n: DIFFERS from the stored transcript ($out/$n.diff)"
		status=1
	fi
done
exit $status
