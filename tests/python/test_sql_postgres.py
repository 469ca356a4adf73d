"""%sql and %%sql against a real PostgreSQL server with TLS (pg_server.py, started
by the `pg_server` fixture; skipped, saying why, where it cannot run, and then
failed under PXKERNEL_REQUIRE_ALL=1, as `make test` runs it): sslmodes and
certificate checks, connection failures, passwords kept out of every output and
the kernel's log, every type into a DataFrame, :name parameters, statements and
transactions, errors with their position, cancel on interrupt, reconnecting after
a server restart, a 100 000-row round trip, table-name completion.

The tests share one pxkernel connected as `pg`; each runs in a schema of its own
(the `pg` fixture) so their tables never meet. Tests that restart the server or
change its certificate use a second server of this module (`spare_server`)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import socket
import subprocess
import time
from decimal import Decimal
from types import SimpleNamespace

import pandas as pd
import pytest

from kernel_helpers import collect, error_of, execute, of_type, pxkernel, read_until, stdout_of
from pg_server import free_port, postgres_server
from test_sql import (
    STORED,
    column_reprs,
    complete,
    connections,
    failed,
    frame,
    interrupt_running,
    kernel_env,
    ok,
    outputs,
    query_rows,
    shown,
)

CONNECT_LIMIT = 20  # seconds: any connection attempt must be answered by then

# -- fixtures and helpers ---------------------------------------------------------


@pytest.fixture(scope="module")
def kernel(pg_server):
    """A pxkernel connected to the session's server as `pg` (sslmode=require): (km, kc)."""
    with pxkernel(env=kernel_env()) as (km, kc):
        msgs = ok(kc, f"%sql {pg_server.url('require')} --alias pg")
        assert stdout_of(msgs) == f"Connected: pg ({masked(pg_server, 'require')})\n"
        yield km, kc


@pytest.fixture(scope="module")
def kc(kernel):
    return kernel[1]


@pytest.fixture
def pg(kc, request):
    """`pg` current, in a fresh schema of the test's own (first on the search path)."""
    schema = "t_" + re.sub(r"\W+", "_", request.node.name).lower()[:55]
    ok(kc, "%sql pg")
    ok(kc, f"%%sql\ndrop schema if exists {schema} cascade;\ncreate schema {schema};\nset search_path = {schema}")
    return kc


@pytest.fixture(scope="module")
def spare_server(pg_server):
    """A second server, for the tests that restart it or change its certificate."""
    with postgres_server() as server:
        yield server


def masked(server, sslmode="require", host="127.0.0.1", extra="", user="postgres"):
    return f"postgresql://{user}:***@{host}:{server.port}/postgres?sslmode={sslmode}{extra}"


def url(server, sslmode="require", host="127.0.0.1", extra="", password=None):
    return server.url(sslmode, password=password, extra=extra).replace("@127.0.0.1:", f"@{host}:")


def openssl(cwd, *args):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def self_signed(directory, name, san="DNS:localhost,IP:127.0.0.1") -> str:
    """A new self-signed certificate (a CA no server here uses); its path."""
    openssl(directory, "req", "-new", "-x509", "-days", "30", "-nodes", "-subj", f"/CN={name}",
            "-addext", f"subjectAltName={san}", "-keyout", f"{name}.key", "-out", f"{name}.crt")
    return str(directory / f"{name}.crt")


def tls_of(kc, alias) -> list[list[str]]:
    """Whether the connection `alias` is encrypted, as the server sees it."""
    return query_rows(kc, f"--alias {alias} select ssl from pg_stat_ssl where pid = pg_backend_pid()")


def no_secret_in(msgs, *secrets, skip=("execute_input",)):
    for m in msgs:
        if m["msg_type"] in skip:
            continue
        text = json.dumps(m["content"])
        for s in secrets:
            assert s not in text, f"{s!r} in {m['msg_type']}: {m['content']}"


def connect_fails(kc, target, alias):
    """`%sql URL --alias` that must fail, answered in bounded time: (reply, error output, messages)."""
    started = time.monotonic()
    reply, err, msgs = failed(kc, f"%sql {target} --alias {alias}", timeout=CONNECT_LIMIT + 10)
    assert time.monotonic() - started < CONNECT_LIMIT
    assert stdout_of(msgs) == "", "no `Connected:`"
    return reply, err, msgs


def aliases(kc) -> list[str]:
    return [alias for _, alias, _, _ in connections(kc)[0]]


# -- TLS and certificates -------------------------------------------------------------


SSLMODES = [
    # (label, sslmode, host)
    ("require", "require", "127.0.0.1"),
    ("prefer, the server wants TLS", "prefer", "127.0.0.1"),
    ("require by host name", "require", "localhost"),
]


@pytest.mark.parametrize("sslmode, host", [c[1:] for c in SSLMODES], ids=[c[0] for c in SSLMODES])
def test_sslmodes_connect_over_tls(kc, pg_server, sslmode, host):
    msgs = ok(kc, f"%sql {url(pg_server, sslmode, host)} --alias tls_check")
    try:
        assert stdout_of(msgs) == f"Connected: tls_check ({masked(pg_server, sslmode, host)})\n"
        assert tls_of(kc, "tls_check") == [["True"]]
    finally:
        ok(kc, "%sql --close tls_check")


SELF_SIGNED_VERIFIED = [
    # (label, sslmode, host)
    ("verify-full by address", "verify-full", "127.0.0.1"),
    ("verify-full by name", "verify-full", "localhost"),
    ("verify-ca by name", "verify-ca", "localhost"),
]


@pytest.mark.parametrize("sslmode, host", [c[1:] for c in SELF_SIGNED_VERIFIED], ids=[c[0] for c in SELF_SIGNED_VERIFIED])
def test_verified_tls_with_the_self_signed_server_certificate(kc, pg_server, sslmode, host):
    extra = f"&sslrootcert={pg_server.cert}"
    reply, msgs = execute(kc, f"%sql {url(pg_server, sslmode, host, extra)} --alias verified")
    assert reply["status"] == "ok", outputs(msgs)
    try:
        assert stdout_of(msgs) == f"Connected: verified ({masked(pg_server, sslmode, host, extra)})\n"
        assert tls_of(kc, "verified") == [["True"]]
    finally:
        execute(kc, "%sql --close verified")


@pytest.fixture(scope="module")
def ca_chain(spare_server, tmp_path_factory):
    """The spare server with a certificate for `localhost` only, issued by a CA of
    our own (CA:TRUE root, CA:FALSE leaf); the CA's and a foreign CA's paths."""
    d = tmp_path_factory.mktemp("ca")
    ca = self_signed(d, "pxk-root-ca", san="DNS:pxk-root-ca.invalid")
    openssl(d, "req", "-new", "-nodes", "-subj", "/CN=localhost", "-keyout", "leaf.key", "-out", "leaf.csr")
    (d / "leaf.ext").write_text(
        "basicConstraints=critical,CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost\n"
    )
    openssl(d, "x509", "-req", "-in", "leaf.csr", "-CA", ca, "-CAkey", "pxk-root-ca.key", "-CAcreateserial",
            "-days", "30", "-extfile", "leaf.ext", "-out", "leaf.crt")
    data = os.path.join(spare_server.dir, "data")
    for src, dst in (("leaf.crt", "server.crt"), ("leaf.key", "server.key")):
        shutil.copy(d / src, os.path.join(data, dst))
        shutil.chown(os.path.join(data, dst), "postgres", "postgres")
    os.chmod(os.path.join(data, "server.key"), 0o600)
    assert spare_server.psql("select pg_reload_conf()").strip() == "t"
    return SimpleNamespace(ca=ca, foreign=self_signed(d, "pxk-foreign-ca"))


CHAIN_CASES = [
    # (label, sslmode, host, root: ca/foreign/missing, None when it connects else what the error says)
    ("verify-full, name in the certificate", "verify-full", "localhost", "ca", None),
    ("verify-ca ignores the name", "verify-ca", "127.0.0.1", "ca", None),
    ("require checks nothing", "require", "127.0.0.1", "foreign", None),
    ("verify-full, address not in the certificate", "verify-full", "127.0.0.1", "ca", 'not valid for name "127.0.0.1"'),
    ("verify-full, foreign CA", "verify-full", "localhost", "foreign", "invalid peer certificate"),
    ("verify-ca, foreign CA", "verify-ca", "127.0.0.1", "foreign", "invalid peer certificate"),
    ("verify-full, no such CA file", "verify-full", "localhost", "missing", "cannot read sslrootcert"),
]


@pytest.mark.parametrize("sslmode, host, root, refused", [c[1:] for c in CHAIN_CASES], ids=[c[0] for c in CHAIN_CASES])
def test_certificate_verification_with_a_ca_chain(kc, spare_server, ca_chain, tmp_path, sslmode, host, root, refused):
    root_path = {"ca": ca_chain.ca, "foreign": ca_chain.foreign, "missing": str(tmp_path / "missing.crt")}[root]
    extra = f"&sslrootcert={root_path}"
    target = url(spare_server, sslmode, host, extra)
    if refused is None:
        msgs = ok(kc, f"%sql {target} --alias chain", timeout=CONNECT_LIMIT)
        try:
            assert stdout_of(msgs) == f"Connected: chain ({masked(spare_server, sslmode, host, extra)})\n"
            assert tls_of(kc, "chain") == [["True"]]
        finally:
            ok(kc, "%sql --close chain")
    else:
        reply, err, msgs = connect_fails(kc, target, "chain")
        assert refused in err["evalue"]
        assert err["evalue"].startswith(f"cannot connect to {masked(spare_server, sslmode, host, extra)}: ")
        no_secret_in(msgs, spare_server.password)
        assert "chain" not in aliases(kc)


# -- connection failures ----------------------------------------------------------------


@pytest.fixture(scope="module")
def foreign_ca(tmp_path_factory):
    return self_signed(tmp_path_factory.mktemp("foreign"), "pxk-other")


@pytest.fixture(scope="module")
def silent_port():
    """A port on 127.0.0.1 that accepts connections and never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def failure_target(case, server, foreign_ca, tmp_path, silent_port):
    return {
        "a server that never answers": f"postgresql://postgres:x@127.0.0.1:{silent_port}/postgres"
                                       "?sslmode=require&connect_timeout=2",
        "wrong password": url(server, password="pw-not-the-right-one"),
        "sslmode=disable, the server wants TLS": url(server, "disable"),
        "verify-full, foreign CA": url(server, "verify-full", extra=f"&sslrootcert={foreign_ca}"),
        "nothing listens on the port": f"postgresql://postgres:x@127.0.0.1:{free_port()}/postgres"
                                       "?sslmode=require&connect_timeout=2",
        "no such CA file": url(server, "verify-full", extra=f"&sslrootcert={tmp_path / 'missing.crt'}"),
    }[case]


FAILURES = [
    # (case, what the error says)
    ("wrong password", 'FATAL: password authentication failed for user "postgres" (SQLSTATE 28P01)'),
    ("sslmode=disable, the server wants TLS", "no pg_hba.conf entry"),
    ("verify-full, foreign CA", "invalid peer certificate"),
    ("nothing listens on the port", "Connection refused"),
    ("no such CA file", "cannot read sslrootcert"),
    ("a server that never answers", "no answer within"),
]


@pytest.mark.parametrize("case, says", FAILURES, ids=[c[0] for c in FAILURES])
def test_connection_failures_say_why_in_bounded_time(kc, pg_server, foreign_ca, tmp_path, silent_port, case, says):
    target = failure_target(case, pg_server, foreign_ca, tmp_path, silent_port)
    reply, err, msgs = connect_fails(kc, target, "failing")
    assert err["evalue"].startswith("cannot connect to postgresql://postgres:***@127.0.0.1:")
    assert says in err["evalue"]
    no_secret_in(msgs, pg_server.password, "pw-not-the-right-one")
    assert "failing" not in aliases(kc)
    assert query_rows(kc, "--alias pg select 1 as still_here") == [["1"]]


ERROR_NAMES = [
    pytest.param("wrong password", id="wrong password"),
    pytest.param("sslmode=disable, the server wants TLS", id="sslmode=disable"),
    pytest.param("verify-full, foreign CA", id="foreign CA"),
    pytest.param("nothing listens on the port", id="nothing listens"),
    pytest.param("no such CA file", id="no such CA file"),
    pytest.param("a server that never answers", id="never answers"),
]


@pytest.mark.parametrize("case", ERROR_NAMES)
def test_connection_failures_are_operational_errors(kc, pg_server, foreign_ca, tmp_path, silent_port, case):
    target = failure_target(case, pg_server, foreign_ca, tmp_path, silent_port)
    reply, err, _ = connect_fails(kc, target, "failing")
    assert (reply["ename"], err["ename"]) == ("OperationalError", "OperationalError")


# -- passwords ----------------------------------------------------------------------------


def test_passwords_never_appear_in_outputs_listings_errors_or_the_log(pg_server, tmp_path):
    log = tmp_path / "pxkernel.log"
    odd_password = "p@ss:w/rd%x;#?&"
    odd_encoded = "p%40ss%3Aw%2Frd%25x%3B%23%3F%26"
    pg_server.psql("DROP ROLE IF EXISTS pxk_odd")
    pg_server.psql(f"CREATE ROLE pxk_odd LOGIN PASSWORD '{odd_password}'")
    wrong = "pw-wrong-" + os.urandom(4).hex()
    secrets = (pg_server.password, odd_password, odd_encoded, wrong)
    env = kernel_env(DATABASE_URL=pg_server.url("require"), PXKERNEL_LOG="debug", PXKERNEL_LOG_FILE=str(log))
    everything = []  # every IOPub message of cells that do not contain a password themselves
    typed = []  # messages of cells whose code has a password (their execute_input echoes it)
    with pxkernel(env=env) as (_, kc):
        # DATABASE_URL: the password is in no cell at all.
        msgs = ok(kc, "%sql select current_user as who")
        assert stdout_of(msgs) == f"Connected: default ({masked(pg_server)})\n"
        assert shown(msgs).rows == [["postgres"]]
        everything += msgs
        reply, err, msgs = failed(kc, "%sql selec 1")
        everything += msgs + [{"msg_type": "execute_reply", "content": reply}]
        # A password with URL-escaped @ : / % ; # ? &, in the authority and as a parameter.
        port = pg_server.port
        msgs = ok(kc, f"%sql postgresql://pxk_odd:{odd_encoded}@127.0.0.1:{port}/postgres?sslmode=require --alias odd")
        assert stdout_of(msgs) == f"Connected: odd ({masked(pg_server, user='pxk_odd')})\n"
        typed += msgs
        msgs = ok(kc, f"%sql postgresql://127.0.0.1:{port}/postgres?sslmode=require&user=pxk_odd"
                      f"&password={odd_encoded} --alias odd2")
        assert stdout_of(msgs) == f"Connected: odd2 ({masked(pg_server, user='pxk_odd')})\n"
        typed += msgs
        assert query_rows(kc, "--alias odd2 select current_user") == [["pxk_odd"]]
        # A wrong one.
        reply, err, msgs = failed(kc, f"%sql {pg_server.url('require', password=wrong)} --alias wrong")
        assert "password authentication failed" in err["evalue"]
        typed += msgs + [{"msg_type": "execute_reply", "content": reply}]
        msgs = ok(kc, "%sql --connections")
        text = of_type(msgs, "display_data")[0]["content"]["data"]["text/plain"]
        assert text.count(":***@") == 3, text
        everything += msgs
    assert log.stat().st_size > 0 and "started kernel" in log.read_text()
    no_secret_in(everything, *secrets, skip=())
    no_secret_in(typed, *secrets)
    text = log.read_text()
    for s in secrets:
        assert s not in text, f"{s!r} in the kernel's log"


# -- every type into a DataFrame -----------------------------------------------------------

PG_TYPES_TABLE = r"""%%sql
create table typed (
  i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, nm numeric(30, 10), nx numeric,
  t text, vc varchar(20), b bool, d date, ts timestamp, tz timestamptz,
  j json, jb jsonb, by bytea, u uuid);
insert into typed values
  (-32768, 2147483647, 9007199254740993, 1.5, 0.1, 12345678901234567890.0123456789, 1.50,
   'O''Reilly; -- ü', 'varchar', true, '2024-02-29', '2024-02-29 12:34:56.789012',
   '2024-02-29 12:34:56.789012+02', '{"a": [1, 2.5, "x"], "b": null}', '[1, {"k": true}]',
   '\x00ff10', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
  (32767, -2147483648, -9223372036854775808, -0.25, -1e300, -0.0001, 'NaN',
   '', '', false, '1969-07-20', '1901-12-13 20:45:52.000001',
   '1969-07-20 20:17:40+00', '"s"', '3.5', '\x', '00000000-0000-0000-0000-000000000000'),
  (null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null, null);
"""

UTC = "UTC"
PG_TYPES = [
    # (column, dtype, values)
    ("i2", "Int64", [-32768, 32767, pd.NA]),
    ("i4", "Int64", [2147483647, -2147483648, pd.NA]),
    ("i8", "Int64", [9007199254740993, -9223372036854775808, pd.NA]),
    ("f4", "float64", [1.5, -0.25, float("nan")]),
    ("f8", "float64", [0.1, -1e300, float("nan")]),
    ("nm", "object", [Decimal("12345678901234567890.0123456789"), Decimal("-0.0001000000"), None]),
    ("nx", "object", [Decimal("1.50"), Decimal("NaN"), None]),
    ("t", "str", ["O'Reilly; -- ü", "", float("nan")]),
    ("vc", "str", ["varchar", "", float("nan")]),
    ("b", "boolean", [True, False, pd.NA]),
    ("d", "object", [dt.date(2024, 2, 29), dt.date(1969, 7, 20), None]),
    ("ts", "datetime64[ns]", [pd.Timestamp("2024-02-29 12:34:56.789012"), pd.Timestamp("1901-12-13 20:45:52.000001"), pd.NaT]),
    ("tz", "datetime64[ns, UTC]", [pd.Timestamp("2024-02-29 10:34:56.789012", tz=UTC), pd.Timestamp("1969-07-20 20:17:40", tz=UTC), pd.NaT]),
    ("j", "object", [{"a": [1, 2.5, "x"], "b": None}, "s", None]),
    ("jb", "object", [[1, {"k": True}], 3.5, None]),
    ("by", "object", [b"\x00\xff\x10", b"", None]),
    ("u", "str", ["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "00000000-0000-0000-0000-000000000000", float("nan")]),
]


@pytest.fixture(scope="module")
def pg_typed(kc, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pg_typed")
    ok(kc, "%sql pg")
    ok(kc, "%%sql\ndrop schema if exists typed_s cascade;\ncreate schema typed_s;\nset search_path = typed_s")
    msgs = ok(kc, PG_TYPES_TABLE)
    assert stdout_of(msgs) == "3 rows affected.\n"
    stored = ok(kc, "pg_typed << %sql select * from typed order by i2 nulls last")
    ok(kc, "%sql -o pg_typed_nn select i8, f8, t, b, d from typed where i2 is not null order by i2")
    shown_table = shown(ok(kc, "%sql select * from typed order by i2 nulls last"))
    return SimpleNamespace(df=frame(kc, "pg_typed", tmp), nn=frame(kc, "pg_typed_nn", tmp),
                           stored=stored, shown=shown_table)


@pytest.mark.parametrize("column, dtype, values", PG_TYPES, ids=[c[0] for c in PG_TYPES])
def test_every_type_round_trips_into_a_dataframe(pg_typed, column, dtype, values):
    df = pg_typed.df
    assert list(df.columns) == [c[0] for c in PG_TYPES] and len(df) == 3
    assert str(df[column].dtype) == dtype
    assert column_reprs(df[column]) == [repr(v) for v in values]


def test_columns_without_nulls_keep_plain_dtypes(pg_typed):
    assert STORED.fullmatch(stdout_of(pg_typed.stored)).groups() == ("3", "17", "pg_typed")
    dtypes = {c: str(t) for c, t in pg_typed.nn.dtypes.items()}
    assert dtypes == {"i8": "Int64", "f8": "float64", "t": "str", "b": "bool", "d": "object"}


def test_every_type_is_shown_as_text(pg_typed):
    table = pg_typed.shown
    assert table.header == [c[0] for c in PG_TYPES] and table.footer == "3 rows"
    assert table.rows[0] == [
        "-32768", "2147483647", "9007199254740993", "1.5", "0.1", "12345678901234567890.0123456789", "1.50",
        "O'Reilly; -- ü", "varchar", "True", "2024-02-29", "2024-02-29 12:34:56.789012",
        "2024-02-29 10:34:56.789012+00:00", '{"a": [1, 2.5, "x"], "b": null}', '[1, {"k": true}]',
        "\\x00ff10", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
    ]
    assert table.rows[2] == ["NULL"] * len(PG_TYPES)
    # The 7 numeric columns are right-aligned (their NULLs too, greyed).
    assert table.html.count('<th style="text-align:right">') == 7
    assert table.html.count('<td style="text-align:right">') == 2 * 7
    assert table.html.count('<td style="text-align:right;color:#999"><em>NULL</em></td>') == 7
    assert "O&#39;Reilly; -- ü" in table.html


# -- :name parameters -----------------------------------------------------------------------


def test_bound_values_go_into_numeric_date_and_text_columns_exactly(pg, tmp_path):
    ok(pg, "import decimal, datetime\n"
           "who = \"O'Reilly \\\"q\\\"; drop table pay; --\"\n"
           "amt = decimal.Decimal('12.50'); day = datetime.date(2024, 2, 29); k = 2; f = 0.25")
    ok(pg, "%sql create table pay (who text, amt numeric(10, 2), day date)")
    msgs = ok(pg, "%%sql\ninsert into pay values (:who, :amt, :day);\n"
                  "insert into pay values ('int', :k, :day);\ninsert into pay values ('float', :f, null)")
    assert stdout_of(msgs) == "1 row affected.\n" * 3
    ok(pg, "%sql -o pay select * from pay order by amt")
    df = frame(pg, "pay", tmp_path)
    assert df["who"].tolist() == ["float", "int", "O'Reilly \"q\"; drop table pay; --"]
    assert column_reprs(df["amt"]) == ["Decimal('0.25')", "Decimal('2.00')", "Decimal('12.50')"]
    assert column_reprs(df["day"]) == ["None", "datetime.date(2024, 2, 29)", "datetime.date(2024, 2, 29)"]
    rows = query_rows(pg, "select who from pay where amt = :amt and day = :day and who = :who")
    assert rows == [["O'Reilly \"q\"; drop table pay; --"]]


PG_BINDINGS = [
    # (label, home kernel assignment, query, shown row)
    ("int", "v = 41", "select :v + 1", ["42"]),
    ("numpy int", "import numpy as np; v = np.int64(7)", "select :v * 2", ["14"]),
    ("int beyond 64 bits", "v = 2**70", "select :v::numeric + 1", ["1180591620717411303425"]),
    ("float", "v = 0.25", "select :v::float8 * 2", ["0.5"]),
    ("None", "v = None", "select :v::int is null", ["True"]),
    ("bool", "v = False", "select not :v", ["True"]),
    ("bytes", "v = b'\\x00\\x01\\xff'", "select :v::bytea, length(:v::bytea)", ["\\x0001ff", "3"]),
    ("datetime", "import datetime; v = datetime.datetime(2024, 1, 2, 3, 4, 5, 6)", "select :v::timestamp",
     ["2024-01-02 03:04:05.000006"]),
    ("aware datetime", "import datetime as d; v = d.datetime(2024, 1, 2, 3, 4, 5, tzinfo=d.timezone(d.timedelta(hours=2)))",
     "select :v::timestamptz", ["2024-01-02 01:04:05+00:00"]),
    ("str with quotes", "v = \"it's \\\"quoted\\\"\"", "select :v, length(:v)", ["it's \"quoted\"", "13"]),
    ("cast after a name", "v = '5'", "select :v::int + 1", ["6"]),
    ("used twice", "v = 3", "select :v::int * :v::int", ["9"]),
    ("literals and comments are not names", "v = 1",
     "select ':v', $$:v$$, E'\\\\:v' /* :v */ -- :v", [":v", ":v", "\\:v"]),
]


@pytest.mark.parametrize("assign, sql, row", [c[1:] for c in PG_BINDINGS], ids=[c[0] for c in PG_BINDINGS])
def test_names_are_bound_as_parameters(pg, assign, sql, row):
    ok(pg, assign)
    assert query_rows(pg, sql) == [row]


def test_a_missing_variable_is_a_name_error(pg):
    reply, err, _ = failed(pg, "%sql select :surely_not_defined_anywhere_pg")
    assert reply["ename"] == err["ename"] == "NameError"
    assert "surely_not_defined_anywhere_pg" in err["evalue"]


# -- statements, errors, transactions ---------------------------------------------------------


def test_multi_statement_cell_with_a_do_block(pg):
    cell = """%%sql
create table items (id int, note text);
DO $$
BEGIN
  INSERT INTO items VALUES (1, 'one; two');
  INSERT INTO items VALUES (2, 'it''s');
END $$;
DO $body$ BEGIN INSERT INTO items VALUES (3, $q$dollar; quoted$q$); END $body$;
insert into items values (4, 'a;b'), (5, '-- not a comment');
update items set note = note || '!' where id > 3;
select id, note from items order by id
"""
    msgs = ok(pg, cell)
    assert stdout_of(msgs) == "2 rows affected.\n2 rows affected.\n"
    table = shown(msgs)
    assert table.header == ["id", "note"] and table.footer == "5 rows"
    assert table.rows == [["1", "one; two"], ["2", "it's"], ["3", "dollar; quoted"], ["4", "a;b!"],
                          ["5", "-- not a comment!"]]


def test_bad_sql_is_a_database_error_with_its_position(pg):
    reply, err, _ = failed(pg, "%sql selec 1")
    assert reply["ename"] == err["ename"] == "DatabaseError"
    assert err["evalue"] == 'ERROR: syntax error at or near "selec" (SQLSTATE 42601)'
    assert err["traceback"] == [f"DatabaseError: {err['evalue']}", "LINE: selec 1", "      ^"]
    # In the statement's own line, with the server's hint.
    reply, err, msgs = failed(pg, "%%sql\nselect 1;\nselect 2,\n       3 +* 4")
    assert err["evalue"] == "ERROR: operator does not exist: integer +* integer (SQLSTATE 42883)"
    tb = err["traceback"]
    assert any(line.startswith("HINT: No operator matches") for line in tb), tb
    assert tb[-2:] == ["LINE:        3 +* 4", "      " + " " * 9 + "^"]
    reply, err, _ = failed(pg, "%sql select * from no_such_table")
    assert "42P01" in err["evalue"] and 'relation "no_such_table" does not exist' in err["evalue"]
    assert query_rows(pg, "select 'still usable'") == [["still usable"]]


def test_the_error_caret_points_at_the_error_when_names_are_bound(pg):
    ok(pg, "a_rather_long_variable_name = 1")
    reply, err, _ = failed(pg, "%sql select :a_rather_long_variable_name, 1 +* 2")
    line, caret = err["traceback"][-2:]
    assert line == "LINE: select :a_rather_long_variable_name, 1 +* 2"
    assert caret.index("^") == line.index("+*")


def test_transactions_rollback_and_commit(pg, pg_server):
    ok(pg, "%%sql\ncreate table acc (a int);\ninsert into acc values (1), (2)")
    schema = query_rows(pg, "select current_schema()")[0][0]
    outside = lambda: pg_server.psql(f"select count(*) from {schema}.acc").strip()  # noqa: E731
    ok(pg, "%sql BEGIN")
    assert stdout_of(ok(pg, "%sql insert into acc values (3)")) == "1 row affected.\n"
    assert query_rows(pg, "select count(*) from acc") == [["3"]]
    assert outside() == "2", "another session does not see it yet"
    assert len(shown(ok(pg, "%sql select g from generate_series(1, 50) g")).rows) == 10, "pages work inside"
    ok(pg, "%sql ROLLBACK")
    assert query_rows(pg, "select count(*) from acc") == [["2"]]
    ok(pg, "%sql START TRANSACTION")
    ok(pg, "%sql insert into acc values (4)")
    ok(pg, "%sql COMMIT")
    assert outside() == "3"
    # An error inside a transaction leaves it failed until ROLLBACK, as in psql.
    ok(pg, "%sql BEGIN")
    failed(pg, "%sql selec")
    reply, err, _ = failed(pg, "%sql select 1")
    assert "25P02" in err["evalue"]
    ok(pg, "%sql ROLLBACK")
    assert query_rows(pg, "select count(*) from acc") == [["3"]]


def test_a_query_ending_in_a_comment_is_counted(pg):
    table = shown(ok(pg, "%sql select g from generate_series(1, 20) g -- have a look"))
    assert table.footer == "showing 10 of 20 rows"


def test_counting_a_shown_result_never_aborts_the_users_transaction(pg):
    ok(pg, "%sql create table kept (a int)")
    ok(pg, "%sql BEGIN")
    try:
        ok(pg, "%sql insert into kept values (1)")
        shown(ok(pg, "%sql select g from generate_series(1, 20) g -- have a look"))
        assert query_rows(pg, "select count(*) from kept") == [["1"]]
    finally:
        execute(pg, "%sql COMMIT")
    assert query_rows(pg, "select count(*) from kept") == [["1"]]


def test_a_thousand_rows_show_a_first_page_then_the_counted_footer(pg):
    reply, msgs = execute(pg, "%sql select g from generate_series(1, 1000) g")
    assert reply["status"] == "ok"
    table = shown(msgs)
    assert table.first["data"]["text/plain"].endswith("showing the first 10 rows (counting…)\n")
    assert table.rows == [[str(i)] for i in range(1, 11)] and table.footer == "showing 10 of 1000 rows"
    table = shown(ok(pg, "%sql --limit 3 select g from generate_series(1, 1000) g"))
    assert len(table.rows) == 3 and table.footer == "showing 3 of 1000 rows"


def test_table_names_complete(pg):
    ok(pg, "%%sql\ncreate table pxk_alpha (a int); create table pxk_alpine (a int);\n"
           "create table other (a int); create view pxk_alview as select 1 as a")
    for code, matches in [
        ("%sql SELECT * FROM pxk_al", ["pxk_alpha", "pxk_alpine", "pxk_alview"]),
        ("%%sql\nselect * from other o join pxk_alp", ["pxk_alpha", "pxk_alpine"]),
        ("%sql select * from ", ["other", "pxk_alpha", "pxk_alpine", "pxk_alview"]),
    ]:
        reply = complete(pg, code)
        assert reply["matches"] == matches, code
        assert reply["cursor_end"] == len(code)


# -- interrupt, restart, volume ------------------------------------------------------------------


def test_interrupt_cancels_the_query_on_the_server(kernel, pg_server):
    km, kc = kernel
    app = "pxk-interrupt-" + os.urandom(4).hex()
    ok(kc, f"%sql {pg_server.url('require', extra=f'&application_name={app}')} --alias sleeper")
    try:
        backend = query_rows(kc, "select pg_backend_pid()")
        running = (f"select count(*) from pg_stat_activity where application_name = '{app}' "
                   "and state = 'active' and query = 'SELECT pg_sleep(60)'")
        msg_id = kc.execute("%sql SELECT pg_sleep(60)")
        seen = read_until(kc, msg_id, lambda m: m["msg_type"] == "execute_input")
        deadline = time.monotonic() + 20
        while pg_server.psql(running).strip() != "1":
            assert time.monotonic() < deadline, "the query never ran on the server"
            time.sleep(0.05)
        # Answered long before pg_sleep(60) would have ended.
        reply = interrupt_running(km, kc, msg_id, limit=20)
        assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
        err = error_of(seen + collect(kc, msg_id))
        assert err["ename"] == "KeyboardInterrupt"
        # Cancelled on the server, not only abandoned here: the backend is idle again …
        deadline = time.monotonic() + 20
        while pg_server.psql(running).strip() != "0":
            assert time.monotonic() < deadline, "pg_sleep(60) still runs on the server"
            time.sleep(0.05)
        # … and the same connection goes on.
        assert query_rows(kc, "select pg_backend_pid()") == backend
        assert query_rows(kc, "select 'after' as word") == [["after"]]
    finally:
        execute(kc, "%sql --close sleeper")


def test_the_next_query_reconnects_after_a_server_restart(spare_server):
    target = spare_server.url("require")
    with pxkernel(env=kernel_env()) as (_, kc):
        ok(kc, f"%sql {target} --alias spare")
        ok(kc, "%%sql\ndrop table if exists survived;\ncreate table survived (a int);\ninsert into survived values (1)")
        backend = query_rows(kc, "select pg_backend_pid()")
        spare_server.restart()
        msgs = ok(kc, "%sql select count(*) as n from survived", timeout=60)
        assert stdout_of(msgs, "stderr") == (
            f"pxkernel: the connection spare had dropped; reconnected to {masked(spare_server)}.\n"
        )
        assert shown(msgs).rows == [["1"]]
        assert query_rows(kc, "select pg_backend_pid()") != backend
        msgs = ok(kc, "%sql select 2 as n")
        assert stdout_of(msgs, "stderr") == "", "said once"
        no_secret_in(msgs, spare_server.password)
        # While the server is down the query fails; once it is back, the next one connects.
        spare_server.stop()
        try:
            reply, err, msgs = failed(kc, "%sql select 3 as n", timeout=CONNECT_LIMIT + 10)
            assert err["ename"] == "OperationalError", err
            no_secret_in(msgs, spare_server.password)
        finally:
            spare_server.restart()  # pg_ctl restart starts a stopped server
        assert query_rows(kc, "select 4 as n", timeout=60) == [["4"]]


def test_a_hundred_thousand_rows_round_trip_into_a_dataframe(pg, pg_server, tmp_path):
    sql = ("select g as i, g * 0.5::float8 as f, g::numeric / 4 as n, 'row ' || g as s "
           "from generate_series(1, 100000) g")
    msgs = ok(pg, f"big << %sql {sql}", timeout=180)
    assert STORED.fullmatch(stdout_of(msgs)).groups() == ("100000", "4", "big")
    assert not of_type(msgs, "execute_result")
    df = frame(pg, "big", tmp_path)
    assert df.shape == (100000, 4)
    assert {c: str(t) for c, t in df.dtypes.items()} == {"i": "Int64", "f": "float64", "n": "object", "s": "str"}
    assert int(df["i"].sum()) == 5000050000
    assert float(df["f"].sum()) == 2500025000.0
    assert sum(df["n"], Decimal(0)) == Decimal("1250012500")
    # Each value with the scale the server gave it.
    first, last = pg_server.psql("select 1::numeric / 4, 100000::numeric / 4").strip().split("|")
    assert [str(v) for v in df["n"].iloc[[0, -1]]] == [first, last]
    assert df["s"].iloc[0] == "row 1" and df["s"].iloc[-1] == "row 100000"
    assert df["i"].is_monotonic_increasing and df["i"].iloc[-1] == 100000
