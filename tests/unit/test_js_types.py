"""clients/js/cloudisense.d.ts: its frame types are the generator's output, and it type-checks a
usage example with ``tsc --noEmit`` (TypeScript from the npm registry, installed by scripts/test under
.venv/tools/) while rejecting an example with deliberate mistakes."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]
DTS = REPO / "clients" / "js" / "cloudisense.d.ts"
TSC = Path(os.environ.get("CLOUDISENSE_TSC", REPO / ".venv" / "tools" / "node_modules" / ".bin" / "tsc"))


def _gen_dts():
    spec = importlib.util.spec_from_file_location("gen_dts", REPO / "scripts" / "gen_dts.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_frame_types_match_the_generator():
    gen = _gen_dts()
    assert gen.extract(DTS.read_text()) == gen.render(), \
        "clients/js/cloudisense.d.ts is out of date: regenerate with python scripts/gen_dts.py --write"


def test_every_frame_and_error_code_is_typed():
    from cloudisense.node._errors import ErrorCode
    from cloudisense.node._frames import frame_schemas
    text = DTS.read_text()
    gen = _gen_dts()
    for side in frame_schemas().values():
        for kind in side:
            assert f"export interface {gen.frame_name(kind)} {{" in text
    for code in ErrorCode:
        assert f'| "{code}"' in text


def test_usage_type_checks_and_mistakes_are_caught(tmp_path):
    """One tsc run (it takes seconds) over both examples: no error in usage.ts, and one on each line
    of misuse.ts marked ``// error``."""
    if not TSC.exists():
        pytest.fail(f"{TSC} is not installed: ./scripts/test installs it (npm install --prefix .venv/tools typescript@5)")
    (tmp_path / "node_modules").mkdir()
    (tmp_path / "node_modules" / "cloudisense").symlink_to(REPO / "clients" / "js")
    for source in ("usage.ts", "misuse.ts"):
        shutil.copy(REPO / "tests" / "js" / source, tmp_path / source)
    (tmp_path / "tsconfig.json").write_text(json.dumps({
        "compilerOptions": {"strict": True, "noEmit": True, "target": "ES2022", "module": "ES2022",
                            "moduleResolution": "bundler", "lib": ["ES2022", "DOM"], "types": []},
        "files": ["usage.ts", "misuse.ts"]}))
    r = subprocess.run([str(TSC), "-p", str(tmp_path)], capture_output=True, text=True, timeout=50, cwd=tmp_path)
    errors = re.findall(r"^(\S+)\((\d+),\d+\): error", r.stdout, re.M)
    assert errors and all(f == "misuse.ts" for f, _ in errors), r.stdout + r.stderr
    marked = [i for i, line in enumerate((REPO / "tests" / "js" / "misuse.ts").read_text().splitlines(), 1)
              if "// error" in line]
    assert sorted({int(n) for _, n in errors}) == marked, r.stdout
