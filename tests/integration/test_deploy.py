"""deploy/: the systemd unit passes systemd-analyze verify; the Prometheus config and alert rules pass
promtool (issue 17).  Skipped, saying why, where the tool is missing (scripts/test installs prometheus)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed here")
    return path


def test_systemd_unit_verifies_clean_and_is_hardened(tmp_path):
    need("systemd-analyze")
    text = (DEPLOY / "cloudisense.service").read_text()
    for option in ("DynamicUser=yes", "ProtectSystem=strict", "NoNewPrivileges=yes", "StateDirectory=cloudisense",
                   "ExecReload=/bin/kill -HUP $MAINPID", "RestartPreventExitStatus=2"):
        assert option in text, option
    # verify wants ExecStart to exist: point it at this venv's real entry point
    exe = Path(sys.executable).with_name("cloudisense")
    unit = tmp_path / "cloudisense.service"
    unit.write_text(text.replace("/usr/local/bin/cloudisense", str(exe)))
    p = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=30)
    # it exits 0 on unknown keys and bad values, only saying so: any remark about our file fails the test
    remarks = [line for line in (p.stdout + p.stderr).splitlines() if "cloudisense.service" in line]
    assert p.returncode == 0 and not remarks, p.stdout + p.stderr


def test_systemd_verify_would_catch_a_broken_unit(tmp_path):
    need("systemd-analyze")
    unit = tmp_path / "cloudisense.service"
    unit.write_text((DEPLOY / "cloudisense.service").read_text().replace("/usr/local/bin/cloudisense", "/bin/true")
                    .replace("ProtectSystem=strict", "ProtectSystem=bogus"))
    p = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=30)
    assert "cloudisense.service" in p.stderr


def test_prometheus_config_and_rules_pass_promtool(tmp_path):
    need("promtool")
    rules = DEPLOY / "cloudisense-alerts.yml"
    p = subprocess.run(["promtool", "check", "rules", str(rules)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and "SUCCESS: 5 rules found" in p.stdout, p.stdout + p.stderr
    names = {line.split(":", 1)[1].strip() for line in rules.read_text().splitlines()
             if line.strip().startswith("- alert:")}
    assert names == {"CloudisenseNodeDown", "CloudisenseFederationDown", "CloudisenseNotReady",
                     "CloudisenseCallErrorRate", "CloudisenseSlowConsumerDrops"}
    # the config names a token file the operator creates; check it with one in place
    (tmp_path / "token").write_text("t")
    shutil.copy(rules, tmp_path / rules.name)
    cfg = tmp_path / "prometheus.yml"
    cfg.write_text((DEPLOY / "prometheus.yml").read_text().replace("/etc/prometheus/cloudisense.token",
                                                                   str(tmp_path / "token")))
    p = subprocess.run(["promtool", "check", "config", str(cfg)], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0 and "SUCCESS" in p.stdout, p.stdout + p.stderr
