"""The tunneld role's filters, on their own: `to_tunneld_toml` round-tripped through Python's own
TOML reader (tomllib) and through tunneld's (`tunneld check`), and `tunneld_newest_deb` against
dpkg.

    VENV/bin/pytest packaging/ansible/tests          # VENV: packaging/ansible/venv.sh

`tunneld check` needs the binary: $TUNNELD_BIN, else `tunneld` on PATH, else the workspace's
target/{debug,release}/tunneld; without one those tests are skipped (the Rust test
tests/tests/ansible_role.rs runs this file with TUNNELD_BIN set, so CI never skips them).
"""

import datetime
import importlib.util
import math
import os
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
WORKSPACE = HERE.parents[2]
PLUGIN = HERE.parent / "roles" / "tunneld" / "filter_plugins" / "tunneld.py"

_spec = importlib.util.spec_from_file_location("tunneld_filters", PLUGIN)
filters = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(filters)
to_toml = filters.to_tunneld_toml


def round_trip(data):
    text = to_toml(data)
    assert tomllib.loads(text) == data, text
    return text


# --- strings -------------------------------------------------------------------------------------

TRICKY_STRINGS = [
    "",
    "plain",
    'a "quoted" word',
    "back\\slash and \\\\ two and a trailing \\",
    '\\"',
    "C:\\new\\table",  # \n and \t that must stay backslash + letter
    "single 'quotes' stay",
    "caf\u00e9 \u00fc\u00df \u65e5\u672c \U0001f511",  # non-ASCII, astral plane too
    "line1\nline2\r\nend\n",
    "tab\there",
    "bell\x07 nul\x00 esc\x1b del\x7f unit-sep\x1f backspace\b formfeed\f",
    "\u2028 line separator and \u00a0 nbsp",
    "'''\"\"\" triple quotes",
    "# not a comment",
    "key = value",
    "[not.a.table]",
    "${HOME} $(id) `id`",
]


@pytest.mark.parametrize("text", TRICKY_STRINGS)
def test_strings_round_trip(text):
    out = round_trip({"s": text, "in_list": [text, text], "t": {"s": text}})
    # One key per line, whatever the string holds: newlines and control characters are escaped.
    assert out.count("\n") == 8, out


def test_string_escapes_are_the_short_ones_where_toml_has_them():
    assert to_toml({"s": 'q" b\\ n\n t\t r\r'}) == 's = "q\\" b\\\\ n\\n t\\t r\\r"\n'
    assert to_toml({"s": "\x00\x1f\x7f"}) == 's = "\\u0000\\u001F\\u007F"\n'
    # Non-ASCII is written as it is (the file is UTF-8), not escaped.
    assert to_toml({"s": "\u00e9\U0001f511"}) == 's = "\u00e9\U0001f511"\n'


def test_lone_surrogate_is_refused():
    with pytest.raises(filters.AnsibleFilterError, match=r"s: a lone surrogate"):
        to_toml({"s": "\ud800"})


# --- keys ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    ["db.internal", "my db", "", 'q"uote', "back\\slash", "caf\u00e9", "a=b", "[x]", "#", "1.2"],
)
def test_keys_that_need_quoting(key):
    out = round_trip({"hosts": {key: {"hostname": "h"}}, key: 1, "t": {key: [key]}})
    assert "[hosts.%s]" % filters._string(key, "") in out, out


def test_bare_keys_stay_bare():
    out = round_trip({"tunnels": {"pg-1_A": {"host": "h"}}})
    assert out == '[tunnels.pg-1_A]\nhost = "h"\n'


def test_non_string_key_is_refused():
    with pytest.raises(filters.AnsibleFilterError, match=r"tunnels: key 1 is a int"):
        to_toml({"tunnels": {1: {"host": "h"}}})


# --- numbers, booleans, dates --------------------------------------------------------------------


def test_numbers_and_booleans():
    data = {
        "zero": 0,
        "port": 22,
        "negative": -17,
        "big": 2**63 - 1,
        "small": -(2**63),
        "float": 1.5,
        "tiny": 5e-324,
        "huge": 1e300,
        "exp": 1e16,
        "negzero": -0.0,
        "yes": True,
        "no": False,
        "bools": [True, False],
    }
    out = round_trip(data)
    assert "port = 22\n" in out and "yes = true\n" in out and "no = false\n" in out
    # 1 and 1.0, true and 1 stay different types.
    loaded = tomllib.loads(to_toml({"i": 1, "f": 1.0, "b": True}))
    assert type(loaded["i"]) is int and type(loaded["f"]) is float and type(loaded["b"]) is bool


def test_special_floats():
    loaded = tomllib.loads(to_toml({"a": float("inf"), "b": float("-inf"), "c": float("nan")}))
    assert loaded["a"] == math.inf and loaded["b"] == -math.inf and math.isnan(loaded["c"])


@pytest.mark.parametrize("number", [2**63, -(2**63) - 1])
def test_integers_beyond_64_bits_are_refused(number):
    with pytest.raises(filters.AnsibleFilterError, match=r"does not fit"):
        to_toml({"tunnels": {"db": {"keepalive_max": number}}})


def test_dates():
    round_trip(
        {
            "d": datetime.date(2024, 2, 29),
            "dt": datetime.datetime(2024, 2, 29, 13, 5, 7),
            "dtz": datetime.datetime(2024, 2, 29, 13, 5, 7, 123000, tzinfo=datetime.timezone.utc),
            "t": datetime.time(7, 30),
        }
    )


# --- lists and tables ----------------------------------------------------------------------------


def test_lists():
    data = {
        "empty": [],
        "one": ["5432:localhost:5432"],
        "several": ["5432:localhost:5432", "6379:localhost:6379"],
        "mixed": ["1080", {"listen": "1081", "auth_file": "/etc/tunneld/socks"}, 3, True],
        "nested": [[1, 2], [], [["a"]]],
        "tuple": ("a", "b"),
    }
    text = to_toml(data)
    loaded = tomllib.loads(text)
    assert loaded == {**data, "tuple": ["a", "b"]}
    # Several elements: one per line (readable diffs of forwards); one element: on one line.
    assert 'one = ["5432:localhost:5432"]\n' in text
    assert 'several = [\n    "5432:localhost:5432",\n    "6379:localhost:6379",\n]\n' in text


def test_nested_tables_and_order():
    data = {
        "defaults": {"user": "tunnel", "identity_files": ["/etc/tunneld/keys/db"]},
        "hosts": {
            "bastion": {"hostname": "bastion.example.com", "port": 2222},
            "db.internal": {"hostname": "192.168.1.50", "jump": ["bastion"]},
        },
        "tunnels": {
            "pg": {"host": "db.internal", "local": ["5432:localhost:5432"]},
            "socks": {"host": "bastion", "dynamic": ["1080"]},
        },
    }
    text = round_trip(data)
    assert text == (
        "[defaults]\n"
        'user = "tunnel"\n'
        'identity_files = ["/etc/tunneld/keys/db"]\n'
        "\n"
        "[hosts.bastion]\n"
        'hostname = "bastion.example.com"\n'
        "port = 2222\n"
        "\n"
        '[hosts."db.internal"]\n'
        'hostname = "192.168.1.50"\n'
        'jump = ["bastion"]\n'
        "\n"
        "[tunnels.pg]\n"
        'host = "db.internal"\n'
        'local = ["5432:localhost:5432"]\n'
        "\n"
        "[tunnels.socks]\n"
        'host = "bastion"\n'
        'dynamic = ["1080"]\n'
    )


def test_keys_of_a_table_come_before_its_subtables():
    # In YAML the sub-table may come first; in TOML a key after [a.b] would belong to a.b.
    data = {"a": {"b": {"x": 1}, "y": 2}, "z": 3}
    text = round_trip(data)
    assert text == "z = 3\n\n[a]\ny = 2\n\n[a.b]\nx = 1\n"


def test_empty_tables():
    assert round_trip({"hosts": {}, "t": {"a": {}}}) == "[hosts]\n\n[t.a]\n"
    assert to_toml({}) == "\n"


def test_dynamic_table_form():
    data = {
        "tunnels": {
            "proxy": {
                "host": "tunnel@gw.example.com",
                "dynamic": [
                    "1080",
                    {"listen": "192.0.2.10:1081", "auth_file": "/etc/tunneld/socks-users"},
                    {"listen": "[::1]:1082"},
                ],
            }
        }
    }
    text = round_trip(data)
    assert (
        '    { listen = "192.0.2.10:1081", auth_file = "/etc/tunneld/socks-users" },\n' in text
    ), text


def test_inline_tables_nest():
    round_trip({"a": [{"b": {"c": [1, {"d": "e\""}]}, "empty": {}}]})


# --- refusals ------------------------------------------------------------------------------------


def test_null_is_refused_with_its_path():
    with pytest.raises(filters.AnsibleFilterError, match=r"tunnels\.db\.user is null"):
        to_toml({"tunnels": {"db": {"host": "h", "user": None}}})
    with pytest.raises(filters.AnsibleFilterError, match=r"tunnels\.db\.local\[1\] is null"):
        to_toml({"tunnels": {"db": {"local": ["1:h:1", None]}}})


def test_top_level_must_be_a_mapping():
    with pytest.raises(filters.AnsibleFilterError, match=r"expected a mapping"):
        to_toml(["tunnels"])


def test_other_objects_are_refused():
    with pytest.raises(filters.AnsibleFilterError, match=r"tunnels\.db\.x: a set has no TOML"):
        to_toml({"tunnels": {"db": {"x": {1, 2}}}})


# --- through Ansible's own templating (the types a playbook really passes) -----------------------


def test_through_ansible_templating(tmp_path):
    """The filter as a play calls it: variables from a YAML file, templated by ansible-core."""
    pytest.importorskip("ansible")
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins.loader import filter_loader
    from ansible.template import Templar

    filter_loader.add_directory(str(PLUGIN.parent))
    (tmp_path / "vars.yml").write_text(
        r"""
port: 6380
config:
  defaults:
    user: tunnel
    identity_files: ["/etc/tunneld/keys/db"]
    keepalive_max: 5
    compression: true
  hosts:
    "db.internal": { hostname: "192.168.1.50", port: 2222 }
  tunnels:
    pg:
      host: db.internal
      local: ["5432:localhost:5432", "{{ port }}:localhost:6379"]
      dynamic: ["1080", { listen: "127.0.0.1:1081", auth_file: "/etc/tunneld/s\"o\\cks" }]
    "caf\u00e9": { host: "h", remote: ["0:localhost:22"] }
""",
        encoding="utf-8",
    )
    loader = DataLoader()
    template = "{{ config | to_tunneld_toml }}"
    try:  # ansible-core 2.19+: only trusted strings are templates
        from ansible.template import trust_as_template

        variables = loader.load_from_file(str(tmp_path / "vars.yml"), trusted_as_template=True)
        template = trust_as_template(template)
    except ImportError:
        variables = loader.load_from_file(str(tmp_path / "vars.yml"))
    text = Templar(loader=loader, variables=variables).template(template)
    loaded = tomllib.loads(text)
    assert loaded["tunnels"]["pg"]["local"] == ["5432:localhost:5432", "6380:localhost:6379"]
    assert loaded["tunnels"]["pg"]["dynamic"][1]["auth_file"] == '/etc/tunneld/s"o\\cks'
    assert loaded["hosts"]["db.internal"]["port"] == 2222
    assert loaded["defaults"]["compression"] is True
    assert loaded["defaults"]["keepalive_max"] == 5
    assert loaded["tunnels"]["caf\u00e9"]["remote"] == ["0:localhost:22"]


# --- through tunneld's own reader ----------------------------------------------------------------


def tunneld_bin():
    if os.environ.get("TUNNELD_BIN"):
        return os.environ["TUNNELD_BIN"]
    found = shutil.which("tunneld")
    if found:
        return found
    for profile in ("debug", "release"):
        candidate = WORKSPACE / "target" / profile / "tunneld"
        if candidate.is_file():
            return str(candidate)
    pytest.skip("no tunneld binary: set TUNNELD_BIN or cargo build -p tunneld")


def check(path):
    return subprocess.run(
        [tunneld_bin(), "check", "--config", str(path)],
        capture_output=True,
        text=True,
        env={**os.environ, "RUST_LOG": "warn", "NO_COLOR": "1"},
        timeout=60,
    )


@pytest.fixture()
def key_dir(tmp_path):
    """A directory whose name needs every escape: the key path must survive the round trip."""
    if not shutil.which("ssh-keygen"):
        pytest.skip("ssh-keygen is not installed")
    directory = tmp_path / 'k"e\\y \u00e9\u65e5 dir'
    directory.mkdir()
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / "id")], check=True
    )
    os.chmod(directory / "id", 0o600)
    (directory / "socks-users").write_text("user:password\n")
    os.chmod(directory / "socks-users", 0o600)
    return directory


def test_tunneld_reads_what_the_filter_writes(tmp_path, key_dir):
    key = str(key_dir / "id")
    data = {
        "defaults": {
            "user": "tunnel",
            "identity_files": [key],
            "keepalive_interval": "15s",
            "keepalive_max": 4,
            "compression": True,
            "use_agent": False,
            "known_hosts": str(key_dir / "known_hosts"),
        },
        "hosts": {
            "db.internal": {"hostname": "192.0.2.50", "port": 2222, "user": "dbadmin"},
            "bastion": {"hostname": "bastion.example.com", "identity_files": [key]},
        },
        "tunnels": {
            "pg": {
                "host": "db.internal",
                "jump": ["bastion"],
                "local": ["5432:localhost:5432", "127.0.0.1:6379:localhost:6379"],
            },
            "socks": {
                "host": "tunnel@203.0.113.7:22",
                "dynamic": [
                    "1080",
                    {"listen": "127.0.0.1:1081", "auth_file": str(key_dir / "socks-users")},
                ],
            },
            "pi": {"host": "vps.example.com", "remote": ["2201:localhost:22"]},
        },
    }
    written = tmp_path / "written.toml"
    written.write_text(to_toml(data), encoding="utf-8")
    result = check(written)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK, 3 tunnel(s)" in result.stdout + result.stderr

    # The same configuration written by hand (TOML literal strings for the odd path): tunneld
    # resolves both to the same tunnels.
    by_hand = tmp_path / "by-hand.toml"
    by_hand.write_text(
        "[defaults]\n"
        'user = "tunnel"\n'
        "identity_files = ['%(key)s']\n"
        'keepalive_interval = "15s"\n'
        "keepalive_max = 4\n"
        "compression = true\n"
        "use_agent = false\n"
        "known_hosts = '%(dir)s/known_hosts'\n"
        '[hosts."db.internal"]\n'
        'hostname = "192.0.2.50"\nport = 2222\nuser = "dbadmin"\n'
        "[hosts.bastion]\n"
        "hostname = \"bastion.example.com\"\nidentity_files = ['%(key)s']\n"
        "[tunnels.pg]\n"
        'host = "db.internal"\njump = ["bastion"]\n'
        'local = ["5432:localhost:5432", "127.0.0.1:6379:localhost:6379"]\n'
        "[tunnels.socks]\n"
        'host = "tunnel@203.0.113.7:22"\n'
        "dynamic = [\"1080\", { listen = \"127.0.0.1:1081\", auth_file = '%(dir)s/socks-users' }]\n"
        "[tunnels.pi]\n"
        'host = "vps.example.com"\nremote = ["2201:localhost:22"]\n'
        % {"key": key, "dir": str(key_dir)},
        encoding="utf-8",
    )
    expected = check(by_hand)
    assert expected.returncode == 0, expected.stdout + expected.stderr
    resolved = lambda out: out.replace(str(written), "FILE").replace(str(by_hand), "FILE")
    assert resolved(result.stdout) == resolved(expected.stdout)
    assert "5432:localhost:5432" in result.stdout and "2201:localhost:22" in result.stdout


def test_tunneld_rejects_a_wrong_type_with_its_own_message(tmp_path, key_dir):
    # An integer where tunneld wants a string: written as an integer, and tunneld says so.
    path = tmp_path / "bad.toml"
    path.write_text(
        to_toml(
            {
                "defaults": {"identity_files": [str(key_dir / "id")]},
                "tunnels": {"socks": {"host": "h", "dynamic": [1080]}},
            }
        ),
        encoding="utf-8",
    )
    result = check(path)
    assert result.returncode == 78, result.stdout + result.stderr
    assert "tunnels.socks.dynamic[0]: invalid type: integer `1080`" in result.stderr, result.stderr


def test_tunneld_reports_a_bad_forward_at_its_line(tmp_path, key_dir):
    path = tmp_path / "db.toml"
    path.write_text(
        to_toml(
            {
                "defaults": {"identity_files": [str(key_dir / "id")]},
                "tunnels": {"db": {"host": "h", "local": ["5432:localhost"]}},
            }
        ),
        encoding="utf-8",
    )
    result = check(path)
    assert result.returncode == 78
    assert (
        '%s:6:10: tunnels.db.local[0]: "5432:localhost" is not [bind:]port:host:hostport' % path
        in result.stderr
    ), result.stderr


# --- tunneld_newest_deb --------------------------------------------------------------------------

VERSIONS = [
    "0.1.0-1",
    "0.1.0-2",
    "0.1.0-10",
    "0.1.0~rc1-1",
    "0.1.0+b1-1",
    "0.1.1-1",
    "0.2.0-1",
    "0.10.0-1",
    "1:0.0.1-1",
    "0.1.0a-1",
    "0.1.0-1ubuntu1",
    "0.1.0-1~bpo12+1",
    "0.1.0",
    "0.1",
    "0.1.0.0-1",
    "0.01.0-1",
]


def sign(n):
    return (n > 0) - (n < 0)


@pytest.mark.skipif(not shutil.which("dpkg"), reason="dpkg is not installed")
def test_version_comparison_agrees_with_dpkg():
    for a in VERSIONS:
        for b in VERSIONS:
            ours = sign(filters.compare_debian_versions(a, b))
            theirs = 0
            for op, value in (("lt", -1), ("gt", 1)):
                if subprocess.run(["dpkg", "--compare-versions", a, op, b]).returncode == 0:
                    theirs = value
            assert ours == theirs, (a, b, ours, theirs)


def test_newest_deb():
    paths = ["/d/tunneld_%s_arm64.deb" % v.replace(":", "%3a") for v in VERSIONS]
    assert filters.tunneld_newest_deb(paths) == "/d/tunneld_1%3a0.0.1-1_arm64.deb"
    paths = ["/d/tunneld_0.9.0-1_armhf.deb", "/d/tunneld_0.10.0-1_armhf.deb"]
    assert filters.tunneld_newest_deb(paths) == "/d/tunneld_0.10.0-1_armhf.deb"
    assert filters.tunneld_newest_deb(["x/tunneld_0.1.0-2_amd64.deb"]) == "x/tunneld_0.1.0-2_amd64.deb"
    with pytest.raises(filters.AnsibleFilterError, match="no package"):
        filters.tunneld_newest_deb([])
    with pytest.raises(filters.AnsibleFilterError, match="is not named"):
        filters.tunneld_newest_deb(["/d/other.deb", "/d/tunneld_0.1.0-1_amd64.deb"])


# --- tunneld_authorized_keys ---------------------------------------------------------------------


def test_authorized_keys_of_what_tunneld_keygen_prints(tmp_path):
    """The real `tunneld keygen`: it creates the key, and each of its lines comes out with the
    server and account it is for (a jump host's too), the notes left out."""
    import pwd
    import socket

    key = tmp_path / "keys" / "t"
    config = tmp_path / "t.toml"
    config.write_text(
        '[defaults]\nidentity_files = ["%s"]\n'
        '[hosts.bastion]\nhostname = "fd00::1"\nuser = "jumper"\n'
        '[tunnels.t]\nhost = "tg@192.0.2.5:2200"\njump = ["bastion"]\n'
        'local = ["5432:localhost:5432"]\nremote = ["1080"]\n' % key
    )
    (tmp_path / "keys").mkdir()
    owner = pwd.getpwuid(os.getuid()).pw_name
    result = subprocess.run(
        [tunneld_bin(), "keygen", "--config", str(config), "--owner", owner],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert key.is_file() and (tmp_path / "keys" / "t.pub").is_file()
    public = " ".join((tmp_path / "keys" / "t.pub").read_text().split()[:2])
    comment = "tunneld:t@%s" % socket.gethostname()
    lines = filters.tunneld_authorized_keys([result.stdout])
    assert [(e["host"], e["port"], e["user"], e["tunnel"], e["comment"]) for e in lines] == [
        ("fd00::1", 22, "jumper", "t", comment),
        ("192.0.2.5", 2200, "tg", "t", comment),
    ], result.stdout
    assert lines[0]["line"] == (
        'restrict,port-forwarding,command="/usr/sbin/nologin",permitopen="192.0.2.5:2200",'
        'permitlisten="none.invalid:1" %s %s' % (public, comment)
    )
    assert lines[1]["line"] == (
        'restrict,port-forwarding,command="/usr/sbin/nologin",permitopen="localhost:5432",'
        'permitlisten="localhost:1080" %s %s' % (public, comment)
    )
    # The same output twice (two sets naming one key and server) gives each line once.
    assert filters.tunneld_authorized_keys([result.stdout, result.stdout]) == lines
    # The private key is never among them.
    private = key.read_text()
    assert all(e["line"] not in private for e in lines)


def test_authorized_keys_refuses_a_line_without_a_heading():
    with pytest.raises(filters.AnsibleFilterError, match="before any server heading"):
        filters.tunneld_authorized_keys("ssh-ed25519 AAAA x\n")
