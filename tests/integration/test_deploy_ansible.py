"""The Ansible role, for real: ansible-lint finds nothing, and the playbook installs recstack on localhost
into a scratch prefix (venv, config file, secret environment file, store tables, systemd units). Without
systemd here, the test then starts the api unit's ExecStart with the unit's environment, as systemd would,
and the API answers from the store the playbook created."""

from __future__ import annotations

import configparser
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from conftest import ROOT
from integration.deploy_support import DEPLOY, tool
from integration.serving_support import free_port, load, make_world, wait_ready
from recstack.storage import open_store

ANSIBLE = DEPLOY / "ansible"


def _unit(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(path)
    return dict(parser["Service"])


def _environment(service: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSTACK_")}
    key, value = service["Environment"].split("=", 1)
    env[key] = value
    env_file = Path(service["EnvironmentFile"].lstrip("-"))
    for line in env_file.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, setting = line.split("=", 1)
            env[name] = setting
    return env


@pytest.mark.slow
def test_ansible_lint_is_clean() -> None:
    result = subprocess.run([tool("ansible-lint"), "--offline", "site.yml", "roles/recstack"], cwd=ANSIBLE,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


@pytest.mark.slow
def test_playbook_installs_recstack_and_the_api_answers(tmp_path: Path) -> None:
    prefix, port = tmp_path / "prefix", free_port()
    database = f"sqlite:///{prefix / 'var' / 'recstack.db'}"
    variables = {
        "ansible_python_interpreter": sys.executable,
        "recstack_become": False,
        "recstack_prefix": str(prefix),
        "recstack_systemd_dir": str(tmp_path / "systemd"),
        "recstack_package": f"{ROOT}[serve]",
        "recstack_pip_extra_args": f"-c {ROOT / 'constraints.txt'} --no-compile",
        "recstack_python": sys.executable,
        "recstack_user": subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip(),
        "recstack_group": subprocess.run(["id", "-gn"], capture_output=True, text=True, check=True).stdout.strip(),
        "recstack_create_user": False,
        "recstack_manage_services": False,
        "recstack_api_port": port,
        "recstack_api_workers": 1,
        "recstack_settings": {"cache_ttl_s": 30, "log_impressions": False},
        "recstack_secrets": {"database_url": database},
    }
    (tmp_path / "systemd").mkdir()
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RECSTACK_")},
           "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"), "ANSIBLE_HOME": str(tmp_path / "ansible-home")}
    played = subprocess.run(
        [tool("ansible-playbook"), "-i", str(ANSIBLE / "inventory.ini"), str(ANSIBLE / "site.yml"),
         "-e", f"@{tmp_path / 'vars.json'}"], cwd=ANSIBLE, env=env, capture_output=True, text=True, check=False,
    )
    assert played.returncode == 0, played.stdout[-6000:] + played.stderr[-3000:]
    assert "failed=0" in played.stdout

    units = {name: _unit(tmp_path / "systemd" / f"recstack-{name}.service") for name in ("api", "stream", "loop")}
    analyze = shutil.which("systemd-analyze")
    if analyze is not None:  # systemd's own parser, where it is installed (it needs no running systemd)
        paths = [str(tmp_path / "systemd" / f"recstack-{name}.service") for name in units]
        verified = subprocess.run([analyze, "verify", *paths], capture_output=True, text=True, check=False)
        assert verified.returncode == 0 and "recstack-" not in verified.stderr, verified.stderr
    assert units["stream"]["ExecStart"].endswith("stream --metrics-port 9100")
    assert units["loop"]["ExecStart"].endswith("loop --metrics-port 9101")
    config = (prefix / "etc" / "recstack.yaml").read_text()
    assert "cache_ttl_s: 30" in config and "database_url" not in config
    assert oct((prefix / "etc" / "recstack.env").stat().st_mode & 0o777) == "0o600"

    store = open_store(database)
    assert store.counts()["interactions"] == 0, "the playbook created the store's tables"
    world = make_world()
    load(store, world)
    store.close()

    api = units["api"]
    command = shlex.split(api["ExecStart"])
    assert Path(command[0]) == prefix / "venv" / "bin" / "recstack"
    created = subprocess.run([command[0], "keys", "create", "--scope", "read", "--json"], env=_environment(api),
                             cwd=api["WorkingDirectory"], capture_output=True, text=True, check=True)
    key = json.loads(created.stdout)["key"]
    server = subprocess.Popen(command, env=_environment(api), cwd=api["WorkingDirectory"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_ready(server, base, 120, 0.5)
        user = str(world.interactions["user_id"].iloc[0])
        url = f"{base}/v1/users/{user}/recommendations"
        assert httpx.get(url, params={"k": 3}, timeout=10).status_code == 401, "keys are on by default"
        answer = httpx.get(url, params={"k": 3}, headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert answer.status_code == 200 and len(answer.json()["items"]) == 3
        assert "recstack_http_requests_total" in httpx.get(f"{base}/metrics", timeout=5).text
    finally:
        server.terminate()
        server.wait(timeout=30)
