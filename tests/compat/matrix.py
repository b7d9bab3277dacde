"""The compatibility matrix: run tests/compat (or read a run's results) and print the table.

python tests/compat/matrix.py                 # run the matrix, print the Markdown table
python tests/compat/matrix.py results.json    # the table of an earlier run
python tests/compat/matrix.py --readme        # run it and put the table into README.md
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BEGIN, END = "<!-- compat-matrix:begin -->", "<!-- compat-matrix:end -->"
# Columns in the order a reader thinks of them; test names are test_<check>.
CHECKS = [
    ("send_short", "send"),
    ("send_long_gsm7", "long GSM-7"),
    ("send_long_ucs2_emoji", "long UCS-2 + emoji"),
    ("receive_single", "receive"),
    ("receive_concatenated", "receive concatenated"),
    ("delivery_report", "report"),
    ("ussd", "USSD"),
    ("recovery_after_hang", "recovery after hang"),
    ("identity", "IMEI/ICCID/IMSI"),
]
MARK = {"passed": "✅", "failed": "❌", "skipped": "–"}


def table(results: dict[str, dict[str, str]]) -> str:
    """One row per profile (family, model), one column per check."""
    sys.path[:0] = [str(ROOT / "services" / "modem-sim"), str(ROOT / "shared")]
    from smsgate_sim import PROFILES

    head = "| family (profile) | " + " | ".join(label for _, label in CHECKS) + " |"
    rows = [head, "|" + "---|" * (len(CHECKS) + 1)]
    for name, profile in PROFILES.items():
        got = results.get(name, {})
        family = f"{profile.manufacturer} {profile.model} (`{name}`)"
        marks = [MARK.get(got.get(check, ""), "?") for check, _ in CHECKS]
        rows.append(f"| {family} | " + " | ".join(marks) + " |")
    return "\n".join(rows) + "\n"


def run() -> dict[str, dict[str, str]]:
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "compat.json"
        env = {**os.environ, "SMSGATE_COMPAT_RESULTS": str(target)}
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/compat"]
        subprocess.run(command, cwd=ROOT, env=env, check=False)
        return json.loads(target.read_text()) if target.exists() else {}


def into_readme(markdown: str) -> None:
    text = README.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    README.write_text(text[:start] + "\n" + markdown + text[end:])


def main(argv: list[str]) -> int:
    paths = [a for a in argv if not a.startswith("--")]
    results = json.loads(Path(paths[0]).read_text()) if paths else run()
    if not results:
        print("no results: did tests/compat run?", file=sys.stderr)
        return 1
    markdown = table(results)
    if "--readme" in argv:
        into_readme(markdown)
    print(markdown, end="")
    return 0 if all(v == "passed" for row in results.values() for v in row.values()) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
