"""The project README's example (packaging/ansible/examples/pi-fleet): the README shows the files as they are, and the
configuration they make is one tunneld accepts.

    VENV/bin/pytest packaging/ansible/tests          # VENV: packaging/ansible/venv.sh
"""

import importlib.util
import subprocess
import tomllib
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ANSIBLE = HERE.parent
EXAMPLE = ANSIBLE / "examples" / "pi-fleet"
README = ANSIBLE.parent.parent / "README.md"

_spec = importlib.util.spec_from_file_location("test_filter", HERE / "test_filter.py")
test_filter = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(test_filter)


@pytest.mark.parametrize(
    "name",
    [
        "site.yml",
        "inventory.ini",
        "group_vars/pis/main.yml",
        "host_vars/pi-kitchen.yml",
        "ansible.cfg",
    ],
)
def test_readme_shows_the_example_files_as_they_are(name):
    readme = README.read_text(encoding="utf-8")
    assert (EXAMPLE / name).read_text(encoding="utf-8") in readme, (
        "README.md does not show %s as it is: copy it into the README again" % name
    )


def test_every_pi_has_its_own_port():
    ports = [
        (path.stem, path.read_text(encoding="utf-8"))
        for path in sorted((EXAMPLE / "host_vars").glob("*.yml"))
    ]
    numbers = [
        int(line.split(":", 1)[1])
        for _, text in ports
        for line in text.splitlines()
        if line.startswith("tunneld_reverse_port:")
    ]
    assert len(numbers) == len(ports) == 3 and len(set(numbers)) == 3, ports


def test_the_example_configuration_is_valid(tmp_path):
    """group_vars + host_vars through the role's filter, as a play would, then tunneld check:
    valid but for the key file, which exists only on a Pi."""
    pytest.importorskip("ansible")
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins.loader import filter_loader
    from ansible.template import Templar

    filter_loader.add_directory(str(ANSIBLE / "roles" / "tunneld" / "filter_plugins"))
    loader = DataLoader()
    template = "{{ tunneld_sets.vps.config | to_tunneld_toml }}"
    paths = [EXAMPLE / "group_vars/pis/main.yml", EXAMPLE / "host_vars/pi-kitchen.yml"]
    variables = {}
    try:  # ansible-core 2.19+: only trusted strings are templates
        from ansible.template import trust_as_template

        for path in paths:
            variables.update(loader.load_from_file(str(path), trusted_as_template=True))
        template = trust_as_template(template)
    except ImportError:
        for path in paths:
            variables.update(loader.load_from_file(str(path)))
    text = Templar(loader=loader, variables=variables).template(template)
    loaded = tomllib.loads(text)
    assert loaded["tunnels"]["ssh"]["remote"] == ["2201:localhost:22"]

    path = tmp_path / "vps.toml"
    path.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [test_filter.tunneld_bin(), "check", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "ssh: tunnel@vps.example.com:22; remote 2201:localhost:22" in result.stdout, (
        result.stdout + result.stderr
    )
    problems = [line for line in result.stderr.splitlines() if "problem(s)" not in line]
    assert problems and all("/etc/tunneld/keys/vps does not exist" in p for p in problems), (
        result.stderr
    )
