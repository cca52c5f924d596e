"""The wheel installs under the cloudisense namespace only, with its data files and console script."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(180)
ROOT = Path(__file__).resolve().parents[2]


def test_wheel_layout_and_console_script(tmp_path):
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w",
                            str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=150)
    assert built.returncode == 0, built.stderr
    # nothing in pyproject.toml makes setuptools warn (deprecated license table, unlisted packages, ...)
    warnings = [ln for ln in (built.stdout + built.stderr).splitlines() if "Warning" in ln]
    assert not warnings, "\n".join(warnings)
    (wheel,) = tmp_path.glob("cloudisense-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops <= {"cloudisense", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}, tops
    for needed in ("cloudisense/node/_node.py", "cloudisense/node/static/index.html", "cloudisense/agent/__init__.py",
                   "cloudisense/node/static/vendor/uPlot.iife.min.js", "cloudisense/node/static/vendor/uPlot.LICENSE",
                   "cloudisense/tools/__init__.py", "cloudisense/tui/__init__.py",
                   "cloudisense/prompts/__init__.py", "cloudisense/node/demo/logger.py",
                   "cloudisense/tui/screens/main.py", "cloudisense/tui/widgets/plan_view.py",
                   "cloudisense/node/py.typed"):   # the client is typed (PEP 561)
        assert needed in names, needed
    assert any(n.startswith("cloudisense/prompts/") and n.endswith(".txt") for n in names)
    assert any(n.startswith("cloudisense/tui/") and n.endswith(".tcss") for n in names)
    assert any(n.endswith("licenses/LICENSE") for n in names)
    entry = next(n for n in names if n.endswith("entry_points.txt"))
    assert "cloudisense = cloudisense.node.cli:main" in zipfile.ZipFile(wheel).read(entry).decode()
    # installed into a fresh venv (dependencies from this one), the console script works
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
    # dependencies: the test venv's site-packages, after the new venv's own (no network needed)
    import sysconfig
    site = next(venv.glob("lib/python*/site-packages"))
    (site / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--no-deps", "--force-reinstall", str(wheel)],
                   check=True, timeout=120)
    r = subprocess.run([str(venv / "bin" / "cloudisense"), "node", "--broker", "none", "--print-config"],
                       capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert '"prefix": "cloudisense/v1"' in r.stdout
    r = subprocess.run([str(venv / "bin" / "python"), "-c", "import cloudisense.node, sys; print(cloudisense.node.__file__)"],
                       capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert str(venv) in r.stdout, r.stdout
