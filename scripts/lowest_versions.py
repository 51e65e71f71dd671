"""Print `name==lower_bound` for each package named on the command line, from the quoted requirements of
pyproject.toml (its dependencies and extras); used by scripts/test_lowest.sh. A package without a `>=` bound is an
error. Standard library only, Python 3.10 included (no tomllib)."""

import re
import sys
from pathlib import Path


def lower_bounds(pyproject: Path) -> dict[str, str]:
    """`{normalised name: version}` of every quoted `"name>=version..."` requirement."""
    bounds = {}
    for name, version in re.findall(
        r'"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?\s*>=\s*([0-9][^,;"\s]*)', pyproject.read_text()
    ):
        bounds[name.lower().replace("-", "_")] = version
    return bounds


if __name__ == "__main__":
    bounds = lower_bounds(Path(__file__).resolve().parent.parent / "pyproject.toml")
    for name in sys.argv[1:]:
        key = name.lower().replace("-", "_")
        if key not in bounds:
            sys.exit(f"pyproject.toml has no lower bound for {name}")
        print(f"{name}=={bounds[key]}")
