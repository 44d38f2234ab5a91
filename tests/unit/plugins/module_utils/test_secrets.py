# SPDX-License-Identifier: GPL-3.0-or-later
"""Write-only repository secrets: the write rules, the sealed store, and how values reach compose (never disk)."""

import io
import json
import os
import stat

import pytest

from ansible_collections.lockbox.fleet.plugins.module_utils._core import audit as _audit
from ansible_collections.lockbox.fleet.plugins.module_utils._core.errors import InvalidInput, LockboxError
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import project as _project
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repo_secret as _repo_secret
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import repository as _repository
from ansible_collections.lockbox.fleet.plugins.module_utils._fleet import state as _state
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import compose as _compose
from ansible_collections.lockbox.fleet.plugins.module_utils._rules import secrets as _secrets

VALUE = "sk_live_4f9a$HOME'\"\n`x`"  # quotes, $, a newline and backticks: nothing may interpret it
NEW = "sk_live_new-value"


@pytest.mark.parametrize("key", ["API_KEY", "A", "DB_PASSWORD_2", "X" * 64])
def test_keys_that_are_accepted(key):
    assert _secrets.check_key(key) == key


@pytest.mark.parametrize("key", ["", "api_key", "1KEY", "_KEY", "A-B", "../X", "A/B", "X" * 65, "A B", None, "É"])
def test_keys_that_are_refused_name_the_rule(key):
    with pytest.raises(InvalidInput, match=r"secret key .* is not valid"):
        _secrets.check_key(key)


def test_the_write_rules():
    stored = {"digest": _secrets.digest(VALUE), "mode": "env"}
    decide = _secrets.decide
    assert decide("shop", "K", None, VALUE, "env") == _secrets.CREATE
    assert decide("shop", "K", None, VALUE, "env", current="") == _secrets.CREATE
    assert decide("shop", "K", stored, VALUE, "env") == _secrets.UNCHANGED
    assert decide("shop", "K", stored, NEW, "env", current=VALUE) == _secrets.OVERWRITE
    assert decide("shop", "K", stored, NEW, "env", rotate=True) == _secrets.ROTATE
    assert decide("shop", "K", stored, VALUE, "file", current=VALUE) == _secrets.OVERWRITE  # a mode change
    with pytest.raises(InvalidInput, match="mutually exclusive"):
        decide("shop", "K", stored, NEW, "env", current=VALUE, rotate=True)


@pytest.mark.parametrize(("stored", "current", "says"), [
    ({"mode": "env"}, None, "already has a value: overwriting it needs the value it has now"),
    ({"mode": "env"}, "wrong", "the current value given does not match the stored one"),
    ({"mode": "env"}, "", "the current value given does not match"),
    (None, "something", "does not exist, but a current value was given"),
    ({"mode": "file"}, None, "already has a value"),  # same value, other mode: still an overwrite
])
def test_a_refused_write_says_what_to_run_instead(stored, current, says):
    if stored:
        stored["digest"] = _secrets.digest(VALUE)
    value = VALUE if stored and stored["mode"] == "file" else NEW
    with pytest.raises(_secrets.SecretConflict) as refused:
        _secrets.decide("shop", "API_KEY", stored, value, "env", current=current)
    assert says in refused.value.msg
    result = refused.value.as_result()
    runs = [option["run"] for option in result["next"]["options"]]
    assert runs == ["renet secret set shop API_KEY --current-file <file holding the value it has now> "
                    "< <file holding the new value>",
                    "renet secret set shop API_KEY --rotate < <file holding the new value>"]
    assert VALUE not in json.dumps(result) and NEW not in json.dumps(result)


@pytest.fixture
def host(tmp_path, monkeypatch):
    """A host state with repository shop (and its fork), a key file path, and the audit lines written."""
    state_dir = str(tmp_path / "state")
    with _state.HostState(state_dir) as state:
        state.put({"name": "shop", "guid": "g-shop", "network_id": 6336, "status": "ready", "is_fork": False})
        state.put({"name": "shop:try", "guid": "g-try", "network_id": 6400, "status": "ready", "is_fork": True,
                   "parent_guid": "g-shop"})
    lines = []
    monkeypatch.setattr(_audit.syslog, "syslog", lambda _priority, text: lines.append(text))
    key_file = str(tmp_path / "etc" / "secret-store.key")
    monkeypatch.setattr(_repo_secret, "DEFAULT_KEY_FILE", key_file)
    return {"state_dir": state_dir, "key_file": key_file, "audit": lines, "tmp": tmp_path}


def secret(host, check_mode=False, **params):
    return _repo_secret.run(None, dict(params, state_dir=host["state_dir"]), check_mode, key_file=host["key_file"])


def test_the_full_state_machine_and_nothing_ever_shows_a_value(host):
    results = [secret(host, repository="shop", key="API_KEY", value=VALUE, check_mode=True)]
    assert not os.path.exists(os.path.join(host["state_dir"], "secrets"))  # check mode wrote nothing
    results.append(secret(host, repository="shop", key="API_KEY", value=VALUE))
    results.append(secret(host, repository="shop", key="API_KEY", value=VALUE))
    with pytest.raises(_secrets.SecretConflict):
        secret(host, repository="shop", key="API_KEY", value=NEW)
    with pytest.raises(_secrets.SecretConflict):
        secret(host, repository="shop", key="API_KEY", value=NEW, current="not it")
    results.append(secret(host, repository="shop", key="API_KEY", value=NEW, current=VALUE))
    results.append(secret(host, repository="shop", key="API_KEY", value=VALUE, rotate=True))
    results.append(secret(host, repository="shop", key="DB_PASSWORD", value=NEW, mode="file"))
    assert [r.get("outcome") for r in results] == ["created", "created", "unchanged", "overwritten", "rotated",
                                                   "created"]
    assert [r["changed"] for r in results] == [True, True, False, True, True, True]
    listed = secret(host, repository="shop", state="listed")["secrets"]
    assert [(e["key"], e["mode"], e["digest"], e["rotations"]) for e in listed] == [
        ("API_KEY", "env", _secrets.digest(VALUE), 1), ("DB_PASSWORD", "file", _secrets.digest(NEW), 0)]
    assert secret(host, repository="shop", key="API_KEY", state="listed")["secret"]["digest"] == \
        _secrets.digest(VALUE)
    assert secret(host, repository="shop:try", state="listed")["secrets"] == []  # a fork starts with none
    assert secret(host, repository="shop", key="DB_PASSWORD", state="absent")["outcome"] == "removed"
    assert secret(host, repository="shop", key="DB_PASSWORD", state="absent")["outcome"] == "absent"
    events = [json.loads(line) for line in host["audit"]]
    assert [e["event"] for e in events] == ["secret-set", "secret-set", "secret-rotate", "secret-set",
                                            "secret-list", "secret-get", "secret-list", "secret-unset"]
    assert events[0]["digest_prefix"] == _secrets.digest(VALUE)[:12] and events[0]["actor"]["uid"] == os.getuid()
    everything = json.dumps(results) + "".join(host["audit"]) + (host["tmp"] / "state" / "secrets" /
                                                                 "g-shop.json").read_text()
    for value in (VALUE, NEW):
        assert value not in everything and json.dumps(value)[1:-1] not in everything


def test_the_store_is_root_only_sealed_and_bound_to_its_repository_and_key(host):
    secret(host, repository="shop", key="API_KEY", value=VALUE)
    secret(host, repository="shop", key="OTHER", value=NEW)
    path = host["tmp"] / "state" / "secrets" / "g-shop.json"
    assert stat.S_IMODE(os.stat(host["key_file"]).st_mode) == 0o600
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((host["tmp"] / "state" / "secrets").stat().st_mode) == 0o700
    store = _repo_secret.SecretStore(host["state_dir"], "g-shop", host["key_file"])
    assert store.values() == {"API_KEY": ("env", VALUE), "OTHER": ("env", NEW)}
    # A sealed value moved to another key (or another repository's file) does not open.
    document = json.loads(path.read_text())
    document["secrets"]["OTHER"].update(nonce=document["secrets"]["API_KEY"]["nonce"],
                                        sealed=document["secrets"]["API_KEY"]["sealed"])
    path.write_text(json.dumps(document))
    with pytest.raises(LockboxError, match="secret OTHER of repository g-shop cannot be opened"):
        store.values()
    os.rename(path, host["tmp"] / "state" / "secrets" / "g-try.json")
    with pytest.raises(LockboxError, match="belongs to g-shop, not g-try"):
        _repo_secret.SecretStore(host["state_dir"], "g-try", host["key_file"]).values()


def test_a_missing_store_key_is_an_error_that_says_so(host):
    secret(host, repository="shop", key="API_KEY", value=VALUE)
    os.unlink(host["key_file"])
    with pytest.raises(LockboxError, match=r"secret store key .* is missing"):
        _repo_secret.SecretStore(host["state_dir"], "g-shop", host["key_file"]).values()


@pytest.mark.parametrize(("params", "says"), [
    ({"key": "api"}, "secret key 'api' is not valid"),
    ({"key": "K"}, "needs its value"),
    ({"key": "K", "value": "a\0b"}, "NUL byte"),
    ({"key": "K", "value": "x" * 70000}, "too long"),
    ({"key": "K", "value": "v", "mode": "bytes"}, "mode 'bytes' is not valid"),
    ({"key": "K", "value": "v", "state": "shown"}, "state 'shown' is not valid"),
    ({"repository": "nosuch", "key": "K", "value": "v"}, "unknown repository 'nosuch'"),
    ({"repository": "../etc", "key": "K", "value": "v"}, "is not valid"),
])
def test_bad_input_is_refused_and_changes_nothing(host, params, says):
    with pytest.raises(InvalidInput, match=says):
        secret(host, **dict({"repository": "shop"}, **params))
    assert not os.path.exists(os.path.join(host["state_dir"], "secrets"))
    assert not os.path.exists(host["key_file"])


# ---------------------------------------------------------------------------------------
# Reaching containers


def test_compose_gets_values_from_tmpfs_and_the_repository_keeps_placeholders(host, monkeypatch):
    tmp = host["tmp"]
    layout = _repository.Layout(str(tmp / "ds"), mount_root=str(tmp / "mounts"), state_dir=host["state_dir"])
    project_dir = tmp / "mounts" / "g-shop" / "app"
    project_dir.mkdir(parents=True)
    (project_dir / "compose.yaml").write_text(
        "services:\n  web:\n    image: x\n    environment:\n      API: ${REDIACC_SECRET_API_KEY}\n"
        "      GONE: ${REDIACC_SECRET_NOT_SET}\n    secrets: [db]\n"
        "secrets:\n  db:\n    file: ${REDIACC_SECRETS_DIR}/DB_PASSWORD\n")
    secret(host, repository="shop", key="API_KEY", value=VALUE)
    secret(host, repository="shop", key="DB_PASSWORD", value=NEW, mode="file")
    configs = []

    class Runner:
        def run(self, argv, env=None, cwd=None):
            configs.append((argv, dict(env)))
            model = {"name": "app", "services": {"web": {
                "image": "x", "environment": {"API": env.get("REDIACC_SECRET_API_KEY", ""), "GONE": ""},
                "secrets": [{"source": "db"}]}},
                "secrets": {"db": {"file": env["REDIACC_SECRETS_DIR"] + "/DB_PASSWORD"}}}
            return type("R", (), {"stdout": json.dumps(model)})()
    monkeypatch.setattr(_project._loopback_net, "ensure_guard", lambda *a, **k: None)
    monkeypatch.setattr(_project._loopback_net, "converge_service", lambda *a: None)
    handed, warnings = [], []

    def exec_(argv, env, cwd):
        path = argv[argv.index("-f") + 1]
        handed.append((argv, env, path, open(path).read(), stat.S_IMODE(os.stat(path).st_mode)))
        return 0
    secrets_root = str(tmp / "run-secrets")
    assert _project.compose(Runner(), layout, ["up", "-d"], {"REDIACC_NETWORK_ID": "6336"}, str(project_dir),
                            exec_=exec_, warn=warnings.append, secrets_root=secrets_root) == 0
    argv, env, path, live, mode = handed[0]
    assert json.loads(live)["services"]["web"]["environment"]["API"] == VALUE.replace("$", "$$")
    assert mode == 0o600 and path.startswith(secrets_root + "/6336/.compose-") and not os.path.exists(path)
    rendered = (project_dir / ".rediacc" / "compose.json").read_text()
    assert json.loads(rendered)["services"]["web"]["environment"]["API"] == "[secret REDIACC_SECRET_API_KEY]"
    # The file secret on tmpfs, root-only directory; nothing else holds a value.
    assert (tmp / "run-secrets" / "6336" / "DB_PASSWORD").read_text() == NEW
    assert stat.S_IMODE((tmp / "run-secrets" / "6336").stat().st_mode) == 0o700
    seen = json.dumps([argv, env, configs, rendered, warnings]) + (project_dir / ".rediacc.json").read_text()
    assert VALUE not in seen and NEW not in seen and json.dumps(VALUE)[1:-1] not in seen
    assert warnings == ["REDIACC_SECRET_NOT_SET is not set: it interpolates to an empty string (a fork starts with "
                        "no secrets; set it with renet secret set or lockbox.fleet.repo_secret)"]
    # down with unmount (and delete) take the files away
    assert _repo_secret.remove_files(6336, secrets_root) and not os.path.exists(secrets_root + "/6336")
    # Without its file secret the up stops before anything is made, and says which.
    secret(host, repository="shop", key="DB_PASSWORD", state="absent")
    with pytest.raises(InvalidInput, match="needs the file secret DB_PASSWORD, which this repository does not have"):
        _project.compose(Runner(), layout, ["up", "-d"], {"REDIACC_NETWORK_ID": "6336"}, str(project_dir),
                         exec_=exec_, warn=warnings.append, secrets_root=secrets_root)
    assert len(handed) == 1 and not os.path.exists(secrets_root + "/6336")


def test_an_up_that_needs_a_file_secret_the_repository_lacks_fails_and_says_which(tmp_path):
    model = {"services": {"web": {"image": "x"}},
             "secrets": {"db": {"file": os.path.realpath(_secrets.file_path(6400, "DB_PASSWORD"))}}}
    _warnings, problems = _project.secret_references([], {}, 6400, model)
    assert problems == ["secret db needs the file secret DB_PASSWORD, which this repository does not have (a fork "
                        "starts with no secrets): set it with renet secret set --mode file or "
                        "lockbox.fleet.repo_secret mode: file"]
    _warnings, problems = _project.secret_references([], {"DB_PASSWORD": ("file", "v")}, 6400, model)
    assert problems == []


@pytest.mark.parametrize("source", [
    "/var/run/rediacc/secrets/2816/DB_PASSWORD", "/run/rediacc/secrets/2816", "/var/run/rediacc/secrets",
    "/var/run/rediacc/secrets/6336/../2816/DB",
])
def test_another_repository_s_secrets_are_refused_even_unsafe(source):
    volume = {"type": "bind", "source": source, "target": "/s", "read_only": True}
    for model in ({"services": {"web": {"image": "x", "volumes": [volume]}}},
                  {"services": {"web": {"image": "x"}}, "secrets": {"s": {"file": source}}}):
        for unsafe in (False, True):
            with pytest.raises(InvalidInput, match="names other repositories' secrets"):
                _compose.rewrite(model, 6336, mount="/m/g", project_dir="/m/g/app", unsafe=unsafe)


def test_own_secrets_may_be_read_never_written():
    own = _secrets.file_path(6336, "DB")
    read = {"services": {"web": {"image": "x"}}, "secrets": {"s": {"file": own}}}
    out, _slots, _restart = _compose.rewrite(read, 6336, mount="/m/g", project_dir="/m/g/app")
    assert out["secrets"]["s"]["file"] == os.path.realpath(own)
    write = {"services": {"web": {"image": "x", "volumes": [{"type": "bind", "source": own, "target": "/s"}]}}}
    with pytest.raises(InvalidInput, match="own secrets may only be read"):
        _compose.rewrite(write, 6336, mount="/m/g", project_dir="/m/g/app")


def test_an_env_file_naming_another_repository_s_secrets_is_refused_even_unsafe(tmp_path):
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: x\n    env_file: "
                                           "/var/run/rediacc/secrets/2816/.env\n")
    repo = _project.Repository("shop", "g", 6336, str(tmp_path))
    with pytest.raises(InvalidInput, match="names other repositories' secrets"):
        _project.check_referenced_files(repo, [str(tmp_path / "compose.yaml")], unsafe=True)


# ---------------------------------------------------------------------------------------
# renet secret


def test_renet_secret_reads_values_from_stdin_and_answers_agents_in_json(host, monkeypatch, capsys):
    from ansible_collections.lockbox.fleet.plugins.module_utils._front import renet as _renet
    base = ["--datastore", str(host["tmp"] / "ds")]
    layout_class = _repository.Layout
    monkeypatch.setattr(_renet._repository, "Layout",
                        lambda datastore: layout_class(datastore, state_dir=host["state_dir"]))
    monkeypatch.setattr(_renet, "guard_agents", lambda *a: None)

    def renet(argv, stdin=""):
        monkeypatch.setattr(_renet.sys, "stdin", io.StringIO(stdin))
        code = _renet.main(base + argv)
        out = capsys.readouterr()
        return code, out.out, out.err
    assert renet(["secret", "set", "shop", "API_KEY"], VALUE + "\n")[0] == 0
    code, out, _err = renet(["secret", "get", "shop", "API_KEY"])
    assert (code, out.strip()) == (0, _secrets.digest(VALUE))
    code, out, err = renet(["secret", "set", "shop", "API_KEY", "--json"], NEW)
    answer = json.loads(out)
    assert code == 1 and "already has a value" in answer["error"] and "already has a value" in err
    assert [o["run"].split(" < ")[0] for o in answer["next"]["options"]] == [
        "renet secret set shop API_KEY --current-file <file holding the value it has now>",
        "renet secret set shop API_KEY --rotate"]
    (host["tmp"] / "now").write_text(VALUE + "\n")
    assert renet(["secret", "set", "shop", "API_KEY", "--current-file", str(host["tmp"] / "now")], NEW)[0] == 0
    code, out, _err = renet(["secret", "list", "shop"])
    assert code == 0 and _secrets.digest(NEW) in out and NEW not in out
    with pytest.raises(SystemExit):
        renet(["secret", "set", "shop", "API_KEY", "--rotate", "--current-file", "x"], NEW)
    assert "not allowed with argument --rotate" in capsys.readouterr().err
