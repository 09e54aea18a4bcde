"""Secrets in every URL form (issue 20, class 3): ``urls.redact`` hides the userinfo, every
secret query or keyword parameter, and the values of the environment's secret variables,
in a URL or in any text that holds one — fuzzed over URL forms, parameter spellings and
surrounding text — and every place a URL surfaces goes through it: options, the report,
the history, a SUT's storage, ``basht worker``, its logs."""

from __future__ import annotations

import json

import pytest
from fake_trainable import CONFTEST, workload
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_basht import cli, db
from pytest_basht import workload as wl
from pytest_basht.errors import WorkloadError
from pytest_basht.options import BashtOptions
from pytest_basht.sut.optuna_options import StoreOptions
from pytest_basht.sut.pool import log_tail
from pytest_basht.urls import redact, secret_params

FUZZ = settings(max_examples=300, deadline=None, derandomize=True)
SECRET = "Zq9SECRETx7"  # in no word, path or host the fuzzing draws

#: how a secret parameter may be spelt: libpq's, OAuth's, cloud storage's, anyone's
NAMES = ["password", "PASSWORD", "sslpassword", "passwd", "pwd", "pass", "secret", "token",
         "access_token", "api_key", "apikey", "auth", "X-Amz-Signature", "sig",
         "client_secret", "private_key", "credential", "X-Amz-Security-Token"]
hosts = st.sampled_from(["db", "127.0.0.1", "[::1]", "db.example:5432", "h:notaport", ""])
words = st.text(alphabet="abcdefghij ./:-_", max_size=12)
schemes = st.sampled_from(["postgresql", "postgresql+psycopg", "postgres", "mysql", "http",
                           "https", "sqlite", "redis"])


@st.composite
def with_secret(draw: st.DrawFn) -> tuple[str, str]:
    """(form, a text holding ``SECRET`` in one of the ways a URL or a DSN carries a
    credential)."""
    form = draw(st.sampled_from(["userinfo", "user-only", "query", "keyword", "quoted"]))
    scheme, host = draw(schemes), draw(hosts)
    user = draw(st.sampled_from(["ci", "u%40x", "basht"]))
    name = draw(st.sampled_from(NAMES))
    other = draw(st.sampled_from(["", "&sslmode=require", "#frag", "&q=1&r=2"]))
    if form == "userinfo":
        core = f"{scheme}://{user}:{SECRET}@{host}/db?x=1"
    elif form == "user-only":
        core = f"{scheme}://{SECRET}@{host}/db"  # a token as the user (Pushgateway style)
    elif form == "query":
        first = draw(st.sampled_from(["?", "?a=b&"]))
        core = f"{scheme}://{user}@{host}/db{first}{name}={SECRET}{other}"
    elif form == "keyword":
        core = f"host={host or 'db'} user={user} {name}={SECRET} dbname=basht"
    else:
        core = f"host=db {name}='{SECRET} with spaces' port=5432"
    return form, draw(words) + core + draw(st.sampled_from(["", " ", "\n", ", then ", ")"]))


@given(case=with_secret(), keep_user=st.booleans())
@FUZZ
def test_no_secret_survives_redaction_in_any_form(case, keep_user):
    form, text = case
    if form == "user-only" and keep_user:  # a database URL's user is shown: an account name
        keep_user = False
    shown = redact(text, keep_user=keep_user)
    assert SECRET not in str(shown)
    assert redact(shown, keep_user=keep_user) == shown  # once is enough


@given(text=words, value=st.text(alphabet="abcdefXYZ019!@#", min_size=4, max_size=16),
       var=st.sampled_from(["PGPASSWORD", "BASHT_STORAGE_PASSWORD", "BASHT_PROMETHEUS_TOKEN",
                            "GITHUB_TOKEN", "AWS_SECRET", "MY_API_KEY"]))
@FUZZ
def test_an_environment_secret_is_hidden_wherever_it_appears(text, value, var):
    with pytest.MonkeyPatch.context() as env:
        env.setenv(var, value)
        assert value not in str(redact(f"{text}postgresql://ci:{value}@db/b {value}{text}"))


@given(text=words)
@FUZZ
def test_text_without_a_secret_is_left_as_it_is(text):
    for plain in (text, f"http://host/{text}?q=1", "NAME:KEY=VALUE", "passes=3 author=bob"):
        assert redact(plain) == plain


def test_secret_params_names_the_query_parameters_that_hold_one():
    assert secret_params("postgresql://u@h/d?password=p&sslmode=x&Token=1") == ["password",
                                                                                "Token"]
    assert secret_params("postgresql://u@h/d?sslmode=require") == []
    url = db.parse("postgresql://u@h/d?sslpassword=p&application_name=x")
    assert db.secrets_in(url) == ["sslpassword"]
    assert db.secrets_in(db.parse("postgresql://u:p@h/d")) == ["password"]


@pytest.mark.parametrize("storage", [
    f"postgresql://ci@db/basht?password={SECRET}",
    f"postgresql://ci@db/basht?sslpassword={SECRET}&sslmode=require",
    f"postgresql://ci:{SECRET}@db/basht",
])
def test_a_storage_url_holding_a_password_in_any_form_is_refused_unshown(storage):
    """The libpq query form used to pass the SUT's check and be printed six times."""
    w = wl.from_mapping({"sut": {"name": "optuna", "options": {"storage": storage}}}, "w.yaml")
    with pytest.raises(WorkloadError, match="a URL without a password") as info:
        StoreOptions.parse(w)
    assert SECRET not in str(info.value)
    options = BashtOptions(None, __import__("pathlib").Path("r"), None, None, None, None,
                           sut={"name": "optuna", "options": {"storage": storage}},
                           history=storage)
    assert SECRET not in json.dumps(options.to_dict())


@pytest.mark.parametrize("storage, needle", [
    (f"nosuchdriver://ci:{SECRET}@db/b", "NoSuchModuleError"),
    (f"post gres://ci:{SECRET}@db/b", "ArgumentError"),
    (f"postgresql://ci:{SECRET}@db:port/b", "ValueError"),
])
def test_basht_worker_with_a_bad_storage_url_is_a_clear_error(capsys, storage, needle):
    code = cli.main(["worker", "--storage", storage, "--study", "s", "--wait", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("basht: error: --storage: expected an SQLAlchemy URL whose driver "
                          "is installed") and needle in err
    assert SECRET not in err and "Traceback" not in err


def test_a_worker_log_quoting_a_url_is_redacted(tmp_path, monkeypatch):
    monkeypatch.setenv("PGPASSWORD", "Envsecret42")
    log = tmp_path / "worker-0.log"
    log.write_text(f"Traceback ...\nOperationalError: postgresql://ci:{SECRET}@db/b "
                   "password=Envsecret42 failed\n")
    tail = log_tail(log)
    assert SECRET not in tail and "Envsecret42" not in tail and "OperationalError" in tail


def test_no_secret_reaches_the_terminal_the_report_or_the_history(pytester, monkeypatch):
    """A run whose history URL holds a libpq password and whose environment holds one:
    neither is printed or saved anywhere."""
    monkeypatch.setenv("PGPASSWORD", "EnvPgSecret9")
    pytester.makeconftest(CONFTEST)
    pytester.makefile(".yaml", w=workload([1], workers=1, epochs=1,
                                          extra="energy: {idle_s: 0}\n"))
    pytester.makepyfile("def test_s(trial_runner):\n    assert trial_runner.run().trials\n")
    history = f"postgresql://ci@127.0.0.1:9/basht?password={SECRET}&connect_timeout=2"
    result = pytester.runpytest_subprocess("--basht-workload", "w.yaml",
                                           "--basht-history", history)
    out = result.stdout.str() + result.stderr.str()
    result.assert_outcomes(passed=1)
    assert "history: not saved" in out  # no server there: said, with the URL redacted
    assert "password=***" in out
    written = "".join(p.read_text(errors="replace")
                      for p in (pytester.path / "reports").rglob("*") if p.is_file())
    for secret in (SECRET, "EnvPgSecret9"):
        assert secret not in out and secret not in written
