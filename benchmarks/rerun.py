"""Run a saved benchmark result again: `.venv/bin/python benchmarks/rerun.py FILE.json [...]`.

Each result under benchmarks/results/ that a script saved with `s23dr.bench.save_result`
stores the command that made it, the resolved params and the code version. This runs that
command with the code at hand and `--out` pointing at the same file, so the result is
replaced by a fresh one; compare the two files' `code_version` to see whether the code moved
in between. Results saved before the scripts stored their command say so and are left alone,
and a command that is not one of these scripts with its arguments is refused, not run.
"""

import json
import subprocess
import sys
from pathlib import Path


BENCHMARKS = Path(__file__).resolve().parent


def rerun(path):
    saved = json.loads(Path(path).read_text())
    command = saved.get("command")
    if not isinstance(command, list):
        raise SystemExit(f"error: {path} stores no command (saved before the scripts recorded theirs); "
                         f"its label says what it tried: {saved.get('label')!r}")
    script = BENCHMARKS.parent / str(command[0]) if command else BENCHMARKS
    if not (script.resolve().parent == BENCHMARKS and script.suffix == ".py" and script.is_file()
            and all(isinstance(arg, str) for arg in command)):  # a file we read runs none but our own scripts
        raise SystemExit(f"error: {path}: command {command!r} is not one of the scripts in {BENCHMARKS} with "
                         f"its arguments; refused")
    args = list(command[1:])
    if "--out" in args:
        args[args.index("--out") + 1] = str(path)
    else:
        args += ["--out", str(path)]
    print(" ".join([sys.executable, str(script), *args]), flush=True)
    subprocess.run([sys.executable, str(script), *args], check=True)


if __name__ == "__main__":
    for name in sys.argv[1:] or sys.exit(__doc__):
        rerun(name)
