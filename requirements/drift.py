"""Print the releases a fresh unlocked install resolved beside the versions requirements/lock.txt pins.

Reads `pip freeze` output on stdin; the lock's path is the one argument. Used by `make test-latest` so that a
failure on newer releases names the packages that moved. Always exits 0: it reports, the tests judge."""
from __future__ import annotations

import re
import sys


def pins(lines) -> dict[str, str]:
    """{normalised name: version} of every `name==version` line (comments and annotations ignored)."""
    found = {}
    for line in lines:
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;#]+)", line)
        if match:
            found[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return found


def main() -> None:
    with open(sys.argv[1], encoding="utf-8") as lock_file:
        locked = pins(lock_file)
    resolved = pins(sys.stdin)
    moved = [(name, locked[name], version) for name, version in sorted(resolved.items())
             if name in locked and locked[name] != version.split("+")[0]]
    new = sorted(set(resolved) - set(locked))
    print(f"test-latest: {len(resolved)} packages resolved, {len(moved)} newer or other than the lock")
    for name, old, version in moved:
        print(f"  {name:28s} lock {old:14s} -> {version}")
    if new:
        print("  not in the lock: " + ", ".join(new))


if __name__ == "__main__":
    main()
