"""%sql and %%sql against SQLite (no server needed), through jupyter_client:
connecting, statements, the shown table and its counted footer, DataFrames in the
home kernel, :name parameters, errors, interrupt, connections, DATABASE_URL,
completion and help.

Most tests share one pxkernel; each gets an in-memory database of its own (the
`db` fixture) that is current while it runs. Tests that need a kernel in a given
state (no connection, an environment, a working directory) start their own.
The helpers at the top are used by test_sql_postgres.py too."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from queue import Empty
from types import SimpleNamespace

import pandas as pd
import pytest

from kernel_helpers import (
    TIMEOUT,
    collect,
    error_of,
    execute,
    notebook_env,
    of_type,
    pxkernel,
    read_until,
    shell_reply,
    stdout_of,
    wait_until,
)

# -- helpers (shared with test_sql_postgres.py) ---------------------------------


def kernel_env(**extra) -> dict[str, str]:
    """A kernel's environment: as in a notebook, and without the DATABASE_URL the
    test run may have, unless given here."""
    env = {k: v for k, v in notebook_env().items() if k != "DATABASE_URL"}
    env.update(extra)
    return env


def outputs(msgs):
    """What a cell published, for assertion messages."""
    return [(m["msg_type"], m["content"]) for m in msgs if m["msg_type"] not in ("status", "execute_input")]


def ok(kc, code, timeout=TIMEOUT):
    """Run a cell that must succeed; its IOPub messages."""
    reply, msgs = execute(kc, code, timeout=timeout)
    assert reply["status"] == "ok", f"{code!r}: {reply.get('ename')}: {reply.get('evalue')}\n{outputs(msgs)}"
    return msgs


def failed(kc, code, timeout=TIMEOUT):
    """Run a cell that must fail: (reply, its one error output, all messages)."""
    reply, msgs = execute(kc, code, timeout=timeout)
    assert reply["status"] == "error", f"{code!r} did not fail: {outputs(msgs)}"
    return reply, error_of(msgs), msgs


def parse_table(text: str):
    """A text/plain table as (header, rows, footer); columns are found from the
    rule of dashes under the header."""
    lines = text.rstrip("\n").split("\n")
    header, rule, *body = lines
    spans = [m.span() for m in re.finditer(r"-+", rule)]

    def cells(line):
        out = []
        for i, (start, _) in enumerate(spans):
            end = spans[i + 1][0] if i + 1 < len(spans) else None
            out.append(line[start:end].strip())
        return out

    footer = body.pop()
    return cells(header), [cells(line) for line in body], footer


def shown(msgs):
    """The table a cell shows, after its footer update if any."""
    results = of_type(msgs, "execute_result")
    assert len(results) == 1, outputs(msgs)
    first = results[0]["content"]
    display_id = first["transient"]["display_id"]
    updates = [m["content"] for m in of_type(msgs, "update_display_data")]
    assert all(u["transient"]["display_id"] == display_id for u in updates), updates
    data = (updates[-1] if updates else first)["data"]
    header, rows, footer = parse_table(data["text/plain"])
    return SimpleNamespace(header=header, rows=rows, footer=footer, html=data["text/html"], first=first, updates=updates)


def query_rows(kc, sql, timeout=TIMEOUT):
    """The rows a one-line %sql query shows (text cells)."""
    return shown(ok(kc, f"%sql {sql}", timeout=timeout)).rows


def frame(kc, name, tmp_path) -> pd.DataFrame:
    """The home kernel's DataFrame `name`, as it is there (pickled across)."""
    path = tmp_path / f"{name}.pkl"
    ok(kc, f"{name}.to_pickle({str(path)!r})")
    return pd.read_pickle(path)


def home_repr(kc, expr) -> str:
    """repr() of an expression evaluated in the home kernel."""
    return stdout_of(ok(kc, f"print(repr({expr}))")).rstrip("\n")


def column_reprs(series) -> list[str]:
    """A column's values as repr() shows them: tells 1 from 1.0, date from
    Timestamp, bytes from str, None from nan from <NA>, and Decimal's scale."""
    return [repr(v) for v in series.tolist()]


def complete(kc, code, cursor=None):
    msg_id = kc.complete(code, len(code) if cursor is None else cursor)
    return shell_reply(kc, msg_id)["content"]


STORED = re.compile(r"Stored (\d+) rows? × (\d+) columns? in (\w+) \(DataFrame\) in \d+\.\d\d s\.\n")


def series(n: int) -> str:
    """A query of n rows, x = 1..n."""
    return f"with recursive n(x) as (select 1 union all select x + 1 from n where x < {n}) select x from n"


# -- fixtures ------------------------------------------------------------------


@pytest.fixture(scope="module")
def kc():
    with pxkernel(env=kernel_env()) as (_, kc):
        yield kc


@pytest.fixture
def db(kc, request):
    """A new in-memory database, the current connection while the test runs."""
    alias = "t_" + re.sub(r"\W+", "_", request.node.name)[:60]
    msgs = ok(kc, f"%sql sqlite:// --alias {alias}")
    assert stdout_of(msgs) == f"Connected: {alias} (sqlite://)\n"
    yield alias
    execute(kc, f"%sql --close {alias}")


# -- connecting ----------------------------------------------------------------

CONNECT_FORMS = [
    # (label, arguments after %sql, alias, masked URL, file created)
    ("memory", "sqlite://", "memory", "sqlite://", None),
    ("explicit memory", "sqlite:///:memory:", "memory", "sqlite://", None),
    ("absolute path", "sqlite:///{tmp}/sales.db", "sales", "sqlite:///{tmp}/sales.db", "sales.db"),
    ("alias after the url", "sqlite:///{tmp}/x.db --alias books", "books", "sqlite:///{tmp}/x.db", "x.db"),
    ("alias before the url", "--alias early sqlite:///{tmp}/y.db", "early", "sqlite:///{tmp}/y.db", "y.db"),
    ("short alias option", "sqlite:///{tmp}/z.db -A zed", "zed", "sqlite:///{tmp}/z.db", "z.db"),
    ("escaped space", "sqlite:///{tmp}/my%20file.db", "my file", "sqlite:///{tmp}/my file.db", "my file.db"),
    pytest.param(
        "sqlite3:///{tmp}/three.db", "three", "sqlite:///{tmp}/three.db", "three.db",
        id="sqlite3 scheme",
    ),
]


@pytest.mark.parametrize(
    "args, alias, masked, created",
    [c if hasattr(c, "marks") else pytest.param(*c[1:], id=c[0]) for c in CONNECT_FORMS],
)
def test_connect_forms(kc, tmp_path, args, alias, masked, created):
    # {tmp} is absolute, so sqlite:///{tmp} is the sqlite:////abs/path form.
    tmp = str(tmp_path)
    msgs = ok(kc, f"%sql {args.format(tmp=tmp)}")
    try:
        assert stdout_of(msgs) == f"Connected: {alias} ({masked.format(tmp=tmp)})\n"
        ok(kc, "%%sql\ncreate table here (v text);\ninsert into here values ('written')")
        assert query_rows(kc, "select v from here") == [["written"]]
        if created:
            with sqlite3.connect(tmp_path / created) as con:
                assert con.execute("select v from here").fetchall() == [("written",)]
    finally:
        ok(kc, f"%sql --close {alias!r}" if " " in alias else f"%sql --close {alias}")


def test_relative_path_is_relative_to_the_kernel_directory(tmp_path):
    with pxkernel(env=kernel_env(), cwd=str(tmp_path)) as (_, kc):
        msgs = ok(kc, "%sql sqlite:///relative.db")
        assert stdout_of(msgs) == "Connected: relative (sqlite:///relative.db)\n"
        ok(kc, "%%sql\ncreate table t (a integer);\ninsert into t values (7)")
        with sqlite3.connect(tmp_path / "relative.db") as con:
            assert con.execute("select a from t").fetchall() == [(7,)]
        # A directory that does not exist: the connection fails, nothing is added.
        reply, err, _ = failed(kc, "%sql sqlite:///no/such/dir.db")
        assert reply["ename"] == err["ename"] == "OperationalError"
        assert "unable to open database file" in err["evalue"]
        (listing,) = of_type(ok(kc, "%sql --connections"), "display_data")
        _, rows, footer = parse_table(listing["content"]["data"]["text/plain"])
        assert [r[1] for r in rows] == ["relative"] and footer == "1 connection"


BAD_URLS = [
    # (label, URL, text the usage error must contain)
    ("sqlite with a host", "sqlite://host/x.db", "sqlite:///relative.db"),
    ("unknown parameter", "postgresql://ada:hunter2@127.0.0.1:1/db?frobnicate=1", "frobnicate"),
    ("bad port", "postgresql://ada:hunter2@127.0.0.1:99999/db", "above 65535"),
    ("bad sslmode", "postgresql://ada:hunter2@127.0.0.1/db?sslmode=always", "verify-full"),
    ("bad escape in the password", "postgresql://ada:hunter2%zz@127.0.0.1/db", "not followed by two hex digits"),
]


@pytest.mark.parametrize("url, says", [c[1:] for c in BAD_URLS], ids=[c[0] for c in BAD_URLS])
def test_bad_urls_are_usage_errors_that_never_show_the_password(kc, url, says):
    reply, err, msgs = failed(kc, f"%sql {url}")
    assert reply["ename"] == err["ename"] == "UsageError"
    assert says in err["evalue"]
    for m in msgs:
        if m["msg_type"] != "execute_input":
            assert "hunter2" not in str(m["content"]), m


# -- statements and the shown table ---------------------------------------------


def test_multi_statement_cell_with_quotes_comments_and_semicolons(kc, db):
    cell = """%%sql
create table notes (id integer, body text, "odd;name" text);  -- a comment; with a semicolon
insert into notes values (1, 'a;b', 'x'), (2, 'it''s; -- not a comment', 'y');
/* a block comment; with ; and 'quotes' */
insert into notes values (3, '/* not; a comment */', ';');
update notes set "odd;name" = 'z' where id = 2;
select id, body, "odd;name" from notes order by id;
-- a trailing comment only
"""
    reply, msgs = execute(kc, cell)
    assert reply["status"] == "ok", outputs(msgs)
    assert stdout_of(msgs) == "2 rows affected.\n1 row affected.\n1 row affected.\n"
    (result,) = of_type(msgs, "execute_result")
    assert result["content"]["execution_count"] == reply["execution_count"]
    assert result["content"]["transient"]["display_id"]
    assert not of_type(msgs, "update_display_data")
    assert result["content"]["data"]["text/plain"] == (
        "id  body                    odd;name\n"
        "--  ----------------------  --------\n"
        " 1  a;b                     x\n"
        " 2  it's; -- not a comment  z\n"
        " 3  /* not; a comment */    ;\n"
        "3 rows\n"
    )


def test_affected_rows_are_counted_and_ddl_says_nothing(kc, db):
    ok(kc, "%%sql\ncreate table t (a integer);\ninsert into t values (1), (2), (3)")
    cases = [
        ("update t set a = a + 10 where a < 3", "2 rows affected.\n"),
        ("delete from t where a = 3", "1 row affected.\n"),
        ("update t set a = 0 where a > 100", "0 rows affected.\n"),
        ("create index t_a on t (a)", ""),
        ("drop index t_a", ""),
    ]
    for sql, says in cases:
        msgs = ok(kc, f"%sql {sql}")
        assert stdout_of(msgs) == says, sql
        assert not of_type(msgs, "execute_result"), sql
    assert query_rows(kc, "select a from t order by a") == [["11"], ["12"]]


def test_the_last_statement_with_rows_is_shown(kc, db):
    msgs = ok(kc, "%%sql\nselect 1 as first;\nselect 2 as second;\ncreate table after_rows (a)")
    table = shown(msgs)
    assert table.header == ["second"] and table.rows == [["2"]]


FOOTERS = [
    # (label, rows in the result, options, rows shown, first footer, counted footer or None)
    ("no rows", 0, "", 0, "0 rows", None),
    ("one row", 1, "", 1, "1 row", None),
    ("fewer than the limit", 3, "", 3, "3 rows", None),
    ("exactly the limit", 10, "", 10, "10 rows", None),
    ("one more than the limit", 11, "", 10, "showing the first 10 rows (counting…)", "showing 10 of 11 rows"),
    ("limit option", 5, "--limit 2", 2, "showing the first 2 rows (counting…)", "showing 2 of 5 rows"),
    ("limit above the rows", 3, "--limit 5", 3, "3 rows", None),
]


@pytest.mark.parametrize(
    "n, options, n_shown, first_footer, counted", [c[1:] for c in FOOTERS], ids=[c[0] for c in FOOTERS]
)
def test_rows_shown_and_footer(kc, db, n, options, n_shown, first_footer, counted):
    sql = f"select x from ({series(max(n, 1))}) where x <= {n}"
    msgs = ok(kc, f"%sql {options} {sql}")
    table = shown(msgs)
    first_footer_text = parse_table(table.first["data"]["text/plain"])[2]
    assert first_footer_text == first_footer
    assert table.rows == [[str(i)] for i in range(1, n_shown + 1)]
    if counted is None:
        assert table.updates == []
    else:
        assert len(table.updates) == 1
        assert table.footer == counted
        assert f"<p>{counted}</p>" in table.html


def test_config_limit_applies_to_later_queries(kc, db):
    try:
        assert stdout_of(ok(kc, "%sql --config limit=3")) == "limit = 3\n"
        table = shown(ok(kc, f"%sql {series(5)}"))
        assert table.rows == [["1"], ["2"], ["3"]] and table.footer == "showing 3 of 5 rows"
        table = shown(ok(kc, f"%sql --limit 4 {series(5)}"))
        assert len(table.rows) == 4 and table.footer == "showing 4 of 5 rows"
        table = shown(ok(kc, f"%%sql\n{series(5)}"))
        assert len(table.rows) == 3, "the setting holds for later cells"
    finally:
        assert stdout_of(ok(kc, "%sql --config limit=10")) == "limit = 10\n"
    assert len(shown(ok(kc, f"%sql {series(50)}")).rows) == 10


def test_a_thousand_rows_show_a_first_page_then_the_counted_footer(kc, db):
    reply, msgs = execute(kc, f"%sql {series(1000)}")
    assert reply["status"] == "ok"
    kinds = [m["msg_type"] for m in msgs if m["msg_type"] in ("execute_result", "update_display_data")]
    assert kinds == ["execute_result", "update_display_data"], "the page first, the count after"
    table = shown(msgs)
    first = table.first
    assert first["execution_count"] == reply["execution_count"]
    header, rows, footer = parse_table(first["data"]["text/plain"])
    assert header == ["x"] and rows == [[str(i)] for i in range(1, 11)]
    assert footer == "showing the first 10 rows (counting…)"
    assert "<p>showing the first 10 rows (counting…)</p>" in first["data"]["text/html"]
    (update,) = table.updates
    assert update["transient"]["display_id"] == first["transient"]["display_id"]
    assert "execution_count" not in update
    assert table.rows == rows and table.footer == "showing 10 of 1000 rows"
    assert "<p>showing 10 of 1000 rows</p>" in table.html and table.html.count("<tr>") == 11


def test_html_is_escaped_numbers_right_aligned_null_marked(kc, db):
    ok(
        kc,
        "%%sql\ncreate table h (n integer, s text);\n"
        "insert into h values (42, '<script>alert(\"x\")</script> & more'), (null, null)",
    )
    table = shown(ok(kc, '%sql select n, s as "<b>label</b>" from h order by n is null'))
    html = table.html
    assert "<script>" not in html and "<b>label</b>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more" in html
    assert "&lt;b&gt;label&lt;/b&gt;" in html
    assert '<td style="text-align:right">42</td>' in html
    assert html.count("<em>NULL</em>") == 2
    assert table.header == ["n", "<b>label</b>"]
    assert table.rows == [["42", '<script>alert("x")</script> & more'], ["NULL", "NULL"]]


def test_a_comment_only_cell_does_nothing(kc, db):
    msgs = ok(kc, "%%sql\n-- nothing here; really\n/* nor here */\n")
    assert outputs(msgs) == []


# -- DataFrames in the home kernel -------------------------------------------------

SQLITE_TYPES_TABLE = """%%sql
create table typed (i integer, f real, s text, bl blob, flag boolean, day date,
                    at timestamp, at2 datetime, anything);
insert into typed values
  (1, 1.5, 'a', x'00ff', 1, '2024-02-29', '2024-02-29 12:34:56.789012', '2024-02-29T12:34:56', 1),
  (-9223372036854775808, -0.1, 'O''Reilly', x'', 0, '1969-07-20', '1969-07-20 20:17:40',
   '1969-07-20 20:17:40.5', 'text'),
  (null, null, null, null, null, null, null, null, 2.5)
"""

SQLITE_TYPES = [
    # (column, dtype, values)
    ("i", "Int64", [1, -9223372036854775808, pd.NA]),
    ("f", "float64", [1.5, -0.1, float("nan")]),
    ("s", "str", ["a", "O'Reilly", float("nan")]),
    ("bl", "object", [b"\x00\xff", b"", None]),
    ("flag", "boolean", [True, False, pd.NA]),
    ("day", "object", [dt.date(2024, 2, 29), dt.date(1969, 7, 20), None]),
    ("at", "datetime64[ns]", [pd.Timestamp("2024-02-29 12:34:56.789012"), pd.Timestamp("1969-07-20 20:17:40"), pd.NaT]),
    ("at2", "datetime64[ns]", [pd.Timestamp("2024-02-29 12:34:56"), pd.Timestamp("1969-07-20 20:17:40.5"), pd.NaT]),
    ("anything", "object", [1, "text", 2.5]),
]


@pytest.fixture(scope="module")
def sqlite_typed(kc, tmp_path_factory):
    """The typed table stored with `<<` and with -o, as the home kernel has them."""
    tmp = tmp_path_factory.mktemp("typed")
    ok(kc, "%sql sqlite:// --alias typed")
    try:
        ok(kc, SQLITE_TYPES_TABLE)
        by_arrows = ok(kc, "typed_df << %sql select * from typed")
        by_option = ok(kc, "%sql -o typed_df2 select * from typed")
        no_nulls = ok(kc, "%sql -o typed_nn select i, s, flag from typed where i is not null")
        yield SimpleNamespace(
            msgs=(by_arrows, by_option, no_nulls),
            df=frame(kc, "typed_df", tmp),
            df2=frame(kc, "typed_df2", tmp),
            nn=frame(kc, "typed_nn", tmp),
        )
    finally:
        execute(kc, "%sql --close typed")


def test_storing_says_what_was_stored_and_shows_nothing(sqlite_typed):
    for msgs, (rows, cols, name) in zip(sqlite_typed.msgs, [(3, 9, "typed_df"), (3, 9, "typed_df2"), (2, 3, "typed_nn")]):
        out = stdout_of(msgs)
        match = STORED.fullmatch(out)
        assert match, out
        assert match.groups() == (str(rows), str(cols), name)
        assert not of_type(msgs, "execute_result") and not of_type(msgs, "display_data")


@pytest.mark.parametrize("column, dtype, values", SQLITE_TYPES, ids=[c[0] for c in SQLITE_TYPES])
def test_every_sqlite_type_into_a_dataframe(sqlite_typed, column, dtype, values):
    df = sqlite_typed.df
    assert list(df.columns) == [c[0] for c in SQLITE_TYPES]
    assert isinstance(df.index, pd.RangeIndex) and len(df) == 3
    assert str(df[column].dtype) == dtype
    assert column_reprs(df[column]) == [repr(v) for v in values]
    pd.testing.assert_frame_equal(sqlite_typed.df2, df, check_exact=True)


def test_columns_without_nulls_keep_plain_dtypes(sqlite_typed):
    nn = sqlite_typed.nn
    assert {c: str(t) for c, t in nn.dtypes.items()} == {"i": "Int64", "s": "str", "flag": "bool"}
    assert column_reprs(nn["flag"]) == ["True", "False"]


STORE_FORMS = [
    # (label, cell)
    ("arrows", "got << %sql select 1 as a; select 2 as b, 'two' as c"),
    ("arrows, query on the next line", "got << %sql\nselect 1 as a;\nselect 2 as b, 'two' as c"),
    ("-o", "%sql -o got select 1 as a; select 2 as b, 'two' as c"),
    ("--output", "%sql --output got select 1 as a; select 2 as b, 'two' as c"),
    ("cell -o", "%%sql -o got\nselect 1 as a;\nselect 2 as b, 'two' as c"),
    ("cell arrows", "%%sql got <<\nselect 1 as a;\nselect 2 as b, 'two' as c"),
]


@pytest.mark.parametrize("cell", [c[1] for c in STORE_FORMS], ids=[c[0] for c in STORE_FORMS])
def test_store_forms_keep_the_last_result(kc, db, tmp_path, cell):
    execute(kc, "got = None")
    msgs = ok(kc, cell)
    assert STORED.fullmatch(stdout_of(msgs)).groups() == ("1", "2", "got")
    assert not of_type(msgs, "execute_result")
    df = frame(kc, "got", tmp_path)
    assert df.to_dict("list") == {"b": [2], "c": ["two"]}


def test_storing_an_empty_result_keeps_the_columns(kc, db, tmp_path):
    ok(kc, "%sql create table e (a integer, b text)")
    msgs = ok(kc, "empty << %sql select a, b from e")
    assert STORED.fullmatch(stdout_of(msgs)).groups() == ("0", "2", "empty")
    df = frame(kc, "empty", tmp_path)
    assert list(df.columns) == ["a", "b"] and len(df) == 0


def test_storing_a_statement_without_rows_stores_nothing(kc, db):
    execute(kc, "nothing_here = 'untouched'")
    msgs = ok(kc, "%sql -o nothing_here create table nr (a)")
    assert stdout_of(msgs, "stderr") == "pxkernel: the last statement returned no rows; nothing stored in nothing_here.\n"
    assert home_repr(kc, "nothing_here") == "'untouched'"


# -- :name parameters ------------------------------------------------------------

BINDINGS = [
    # (label, home kernel assignment, query, shown row)
    ("int", "v = 41", "select :v + 1, typeof(:v)", ["42", "integer"]),
    ("numpy int", "import numpy as np; v = np.int64(-7)", "select :v * 2, typeof(:v)", ["-14", "integer"]),
    ("float", "v = 0.1", "select :v * 3, typeof(:v)", ["0.30000000000000004", "real"]),
    ("str with quotes", "v = \"O'Reilly \\\"q\\\"; -- x\"", "select :v, length(:v)", ["O'Reilly \"q\"; -- x", "18"]),
    ("str that looks like SQL", "v = \"x' OR '1'='1\"", "select count(*) from people where name = :v", ["0"]),
    ("None", "v = None", "select :v is null, typeof(:v)", ["1", "null"]),
    ("bool", "v = True", "select :v, typeof(:v)", ["1", "integer"]),
    ("date", "import datetime; v = datetime.date(2024, 2, 29)", "select :v, typeof(:v)", ["2024-02-29", "text"]),
    ("date against a DATE column", "import datetime; v = datetime.date(1969, 7, 20)",
     "select name from people where born = :v", ["Ada"]),
    ("bytes", "v = b'\\x00\\x01\\x02'", "select hex(:v), typeof(:v)", ["000102", "blob"]),
    ("used twice", "v = 5", "select :v + :v", ["10"]),
    ("next to a string", "v = 3", "select :v||':v'", ["3:v"]),
]


@pytest.mark.parametrize("assign, sql, row", [c[1:] for c in BINDINGS], ids=[c[0] for c in BINDINGS])
def test_names_are_bound_as_parameters(kc, db, assign, sql, row):
    ok(kc, "%%sql\ncreate table people (name text, born date);\ninsert into people values ('Ada', '1969-07-20')")
    ok(kc, assign)
    assert query_rows(kc, sql) == [row]


def test_bound_values_go_into_tables_unchanged(kc, db, tmp_path):
    ok(kc, "import datetime; who = \"O'Reilly; drop table t; --\"; when = datetime.date(2024, 1, 31); amount = 12.5")
    ok(kc, "%%sql\ncreate table t (who text, day date, amount real);\ninsert into t values (:who, :when, :amount)")
    ok(kc, "%sql -o back select * from t")
    df = frame(kc, "back", tmp_path)
    assert df.to_dict("list") == {"who": ["O'Reilly; drop table t; --"], "day": [dt.date(2024, 1, 31)], "amount": [12.5]}


def test_names_in_strings_and_comments_are_not_parameters(kc, db):
    # :pxk_nope is defined nowhere: binding it would fail with a NameError.
    rows = query_rows(kc, "select ':pxk_nope' as a, \":pxk_nope\" as b /* :pxk_nope */ -- :pxk_nope")
    assert rows == [[":pxk_nope", ":pxk_nope"]]


def test_a_missing_variable_is_a_name_error(kc, db):
    reply, err, _ = failed(kc, "%sql select :surely_not_defined_anywhere")
    assert reply["ename"] == err["ename"] == "NameError"
    assert "surely_not_defined_anywhere" in err["evalue"]
    assert query_rows(kc, "select 1") == [["1"]]


def test_a_value_that_cannot_be_bound_says_so(kc, db):
    ok(kc, "v = [1, 2]")
    reply, err, _ = failed(kc, "%sql select :v")
    assert reply["ename"] == err["ename"] == "TypeError"
    assert "list" in err["evalue"]


# -- errors ------------------------------------------------------------------------


def test_bad_sql_is_a_database_error_and_the_connection_lives_on(kc, db):
    reply, err, msgs = failed(kc, "%sql selec 1")
    assert reply["ename"] == err["ename"] == "DatabaseError"
    assert 'near "selec": syntax error' in err["evalue"]
    assert err["traceback"] and err["evalue"] in err["traceback"][0]
    assert query_rows(kc, "select 2") == [["2"]]


def test_a_failing_statement_stops_the_cell_after_running_those_before(kc, db):
    ok(kc, "%sql create table s (a integer)")
    reply, err, msgs = failed(kc, "%%sql\ninsert into s values (1);\ninsert into nope values (2);\ninsert into s values (3)")
    assert err["ename"] == "DatabaseError" and "no such table: nope" in err["evalue"]
    assert stdout_of(msgs) == "1 row affected.\n"
    assert query_rows(kc, "select a from s") == [["1"]]


USAGE_ERRORS = [
    # (label, cell, text of the usage error)
    ("nothing to do", "%sql", "give a query"),
    ("unknown option", "%sql --bogus select 1", "--bogus"),
    ("option without its value", "%sql --alias", "needs a value"),
    ("limit not a number", "%sql --limit many select 1", "not a number"),
    ("unknown setting", "%sql --config colour=red", "unknown setting"),
    ("setting without a value", "%sql --config limit", "KEY=VALUE"),
    ("setting not a number", "%sql --config limit=x", "not a number"),
    ("closing an unknown connection", "%sql --close nosuch", "no connection named"),
    ("querying an unknown connection", "%sql --alias nosuch select 1", "no connection named"),
]


@pytest.mark.parametrize("cell, says", [c[1:] for c in USAGE_ERRORS], ids=[c[0] for c in USAGE_ERRORS])
def test_usage_errors(kc, db, cell, says):
    reply, err, _ = failed(kc, cell)
    assert reply["ename"] == err["ename"] == "UsageError"
    assert says in err["evalue"]


# -- interrupt ---------------------------------------------------------------------


def interrupt_running(km, kc, msg_id, limit=20.0):
    """Interrupt a request whose query the caller saw running, once; its reply,
    which must come within `limit` seconds (a deadline, not a measurement)."""
    km.interrupt_kernel()
    try:
        return shell_reply(kc, msg_id, timeout=limit)["content"]
    except Empty:
        raise AssertionError(f"the query was not interrupted: no reply within {limit} s") from None


def write_locked(path) -> bool:
    """Whether another connection holds the SQLite database's write lock (a
    writing statement runs there): taking it ourselves fails at once."""
    con = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        con.execute("begin immediate")
        con.execute("rollback")
        return False
    except sqlite3.OperationalError as e:
        if "locked" not in str(e):
            raise
        return True
    finally:
        con.close()


def test_interrupt_stops_a_runaway_query_and_the_connection_lives_on(tmp_path):
    db = tmp_path / "runaway.db"
    with sqlite3.connect(db) as con:
        con.execute("create table counted (n integer)")
    con.close()
    with pxkernel(env=kernel_env()) as (km, kc):
        ok(kc, f"%sql sqlite:///{db}")
        # An endless count written into a table: the statement takes the database's
        # write lock at its first step and holds it while it runs, which shows the
        # test that it runs.
        endless = (
            "%sql insert into counted "
            "with recursive n(x) as (select 1 union all select x + 1 from n) select count(*) from n"
        )
        msg_id = kc.execute(endless)
        seen = read_until(kc, msg_id, lambda m: m["msg_type"] == "execute_input")
        wait_until(lambda: write_locked(db), timeout=20, interval=0.02, what="the endless query to run")
        reply = interrupt_running(km, kc, msg_id)
        assert reply["status"] == "error" and reply["ename"] == "KeyboardInterrupt", reply
        err = error_of(seen + collect(kc, msg_id))
        assert err["ename"] == "KeyboardInterrupt"
        # Stopped, not abandoned: the lock is released and nothing was written …
        wait_until(lambda: not write_locked(db), timeout=20, what="the interrupted query to let go of the lock")
        assert query_rows(kc, "select count(*) as n from counted") == [["0"]]
        # … and one worker thread runs the connection's statements: this answers
        # only when the endless one really stopped.
        assert query_rows(kc, "select 42 as answer") == [["42"]]


# -- connections ---------------------------------------------------------------------


def connections(kc):
    """%sql --connections as rows of (current mark, alias, driver, url), and the footer."""
    msgs = ok(kc, "%sql --connections")
    (listing,) = of_type(msgs, "display_data")
    data = listing["content"]["data"]
    assert "<table>" in data["text/html"]
    header, rows, footer = parse_table(data["text/plain"])
    if header == ["alias", "driver", "url"]:
        # No connection is current: the column of the mark has no width at all.
        header, rows = [""] + header, [[""] + r for r in rows]
    assert header == ["", "alias", "driver", "url"]
    return [tuple(r) for r in rows], footer


def test_connections_switching_and_closing(tmp_path):
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    for path in (a, b):
        with sqlite3.connect(path) as con:
            con.execute("create table which (name text)")
            con.execute("insert into which values (?)", (path.stem,))
    with pxkernel(env=kernel_env()) as (_, kc):
        reply, err, _ = failed(kc, "%sql select 1")
        assert err["ename"] == "UsageError"
        assert "no database connection" in err["evalue"] and "%sql sqlite://" in err["evalue"]
        assert "DATABASE_URL" in err["evalue"]
        assert connections(kc) == ([], "No connections. Connect with %sql sqlite:// or %sql postgresql://user@host/db.")

        ok(kc, f"%sql sqlite:///{a}")
        ok(kc, f"%sql sqlite:///{b}")
        assert connections(kc) == (
            [("", "a", "sqlite", f"sqlite:///{a}"), ("*", "b", "sqlite", f"sqlite:///{b}")],
            "2 connections",
        )
        assert query_rows(kc, "select name from which") == [["b"]]
        assert stdout_of(ok(kc, "%sql a")) == "Now using a.\n"
        assert query_rows(kc, "select name from which") == [["a"]]
        assert query_rows(kc, "--alias b select name from which") == [["b"]], "--alias picks one for a query"
        assert query_rows(kc, "select name from which") == [["a"]], "and does not switch"
        assert stdout_of(ok(kc, "%sql --alias b")) == "Now using b.\n"
        assert query_rows(kc, "select name from which") == [["b"]]
        assert stdout_of(ok(kc, "%sql --close b")) == "Closed b.\n"
        assert connections(kc) == ([("", "a", "sqlite", f"sqlite:///{a}")], "1 connection")
        reply, err, _ = failed(kc, "%sql select name from which")
        assert "no database connection" in err["evalue"], "closing the current one leaves none current"
        assert query_rows(kc, "-A a select name from which") == [["a"]]


def test_database_url_is_the_fallback_connection(tmp_path):
    path = tmp_path / "env.db"
    with sqlite3.connect(path) as con:
        con.execute("create table marker (v text)")
        con.execute("insert into marker values ('from DATABASE_URL')")
    with pxkernel(env=kernel_env(DATABASE_URL=f"sqlite:///{path}")) as (_, kc):
        msgs = ok(kc, "%sql select v from marker")
        assert stdout_of(msgs) == f"Connected: default (sqlite:///{path})\n"
        assert shown(msgs).rows == [["from DATABASE_URL"]]
        assert connections(kc) == ([("*", "default", "sqlite", f"sqlite:///{path}")], "1 connection")
        assert stdout_of(ok(kc, "%sql select 1")) == "", "connected once"
        # A connection of the user's own takes over.
        ok(kc, "%sql sqlite://")
        failed(kc, "%sql select v from marker")


def test_a_failing_database_url_says_why():
    with pxkernel(env=kernel_env(DATABASE_URL="sqlite:////nonexistent-pxk-dir/x.db")) as (_, kc):
        reply, msgs = execute(kc, "%sql select 1")
        assert reply["status"] == "error"
        evalues = " ".join(e["content"]["evalue"] for e in of_type(msgs, "error"))
        assert "cannot connect to sqlite:////nonexistent-pxk-dir/x.db" in evalues
        assert "unable to open database file" in evalues
        assert connections(kc)[0] == []


def test_a_failing_database_url_is_one_operational_error():
    with pxkernel(env=kernel_env(DATABASE_URL="sqlite:////nonexistent-pxk-dir/x.db")) as (_, kc):
        reply, msgs = execute(kc, "%sql select 1")
        assert reply["status"] == "error"
        assert [e["content"]["ename"] for e in of_type(msgs, "error")] == ["OperationalError"]
        assert reply["ename"] == "OperationalError"


# -- completion and help ---------------------------------------------------------


def test_table_names_complete(kc, db):
    ok(kc, "%%sql\ncreate table alpha (a); create table alpine (a); create table beta (b);\n"
           "create view alview as select * from alpha")
    cases = [
        # (code, matches)
        ("%sql SELECT * FROM al", ["alpha", "alpine", "alview"]),
        ("%sql select * from alp", ["alpha", "alpine"]),
        ("%sql SELECT * FROM ", ["alpha", "alpine", "alview", "beta"]),
        ("%%sql\nselect * from beta b join al", ["alpha", "alpine", "alview"]),
        ("df << %sql select * from be", ["beta"]),
        ("%sql insert into be", ["beta"]),
        ("%sql update al", ["alpha", "alpine", "alview"]),
        ("%sql select * from zz", []),
    ]
    for code, matches in cases:
        reply = complete(kc, code)
        word = re.search(r"\w*$", code).group(0)
        assert reply["status"] == "ok", code
        assert reply["matches"] == matches, code
        assert (reply["cursor_start"], reply["cursor_end"]) == (len(code) - len(word), len(code)), code


def test_table_names_come_from_the_current_connection(kc, db):
    ok(kc, "%sql create table only_in_first (a)")
    ok(kc, "%sql sqlite:// --alias other_db")
    try:
        ok(kc, "%sql create table only_in_other (a)")
        assert complete(kc, "%sql select * from only_")["matches"] == ["only_in_other"]
        ok(kc, f"%sql {db}")
        assert complete(kc, "%sql select * from only_")["matches"] == ["only_in_first"]
    finally:
        execute(kc, "%sql --close other_db")


def test_help_and_option_completion(kc):
    reply, _ = execute(kc, "%sql?")
    assert reply["status"] == "ok"
    (page,) = reply["payload"]
    text = page["data"]["text/plain"]
    assert text.startswith("%sql URL [--alias NAME]\n")
    for option in ("--alias", "--connections", "--close", "--config", "--limit", "--output", "DATABASE_URL"):
        assert option in text, option
    inspect = shell_reply(kc, kc.inspect("%sql select 1", 2))["content"]
    assert inspect["found"] is True and inspect["data"]["text/plain"] == text
    cases = [
        # (code, matches, cursor_start)
        ("%sql --con", ["--connections", "--config"], 5),
        ("%%sql --o", ["--output"], 6),
        ("%sql --li", ["--limit"], 5),
        ("%sql --cl", ["--close"], 5),
        ("%sq", ["%sql", "%%sql"], 0),
    ]
    for code, matches, start in cases:
        reply = complete(kc, code)
        assert reply["matches"][: len(matches)] == matches, code
        assert (reply["cursor_start"], reply["cursor_end"]) == (start, len(code)), code


# -- bugs found by these tests ------------------------------------------------------


def test_insert_returning_more_rows_than_the_limit_runs_once(kc, db):
    ok(kc, "%sql create table r (a integer)")
    values = ", ".join(f"({i})" for i in range(1, 16))
    table = shown(ok(kc, f"%sql insert into r values {values} returning a"))
    assert len(table.rows) == 10
    assert query_rows(kc, "select count(*) from r") == [["15"]]


MISREAD_DECLARED = [
    # (label, column declaration, stored value, reprs that keep its meaning)
    ("DATE holding a date and time", "date", "'2024-01-02 03:04:05'",
     {"'2024-01-02 03:04:05'", "datetime.date(2024, 1, 2)", "Timestamp('2024-01-02 03:04:05')"}),
    ("TIMESTAMP holding a date only", "timestamp", "'2024-01-02'",
     {"'2024-01-02'", "Timestamp('2024-01-02 00:00:00')"}),
    ("TIMESTAMP holding unix seconds", "timestamp", "1704067200",
     {"1704067200", "Timestamp('2024-01-01 00:00:00')"}),
    ("BOOLEAN holding 2", "boolean", "2", {"2", "True"}),
]


@pytest.mark.parametrize("decl, value, kept", [c[1:] for c in MISREAD_DECLARED], ids=[c[0] for c in MISREAD_DECLARED])
def test_declared_types_never_change_values(kc, db, tmp_path, decl, value, kept):
    ok(kc, f"%%sql\ncreate table d (v {decl});\ninsert into d values ({value})")
    assert query_rows(kc, "select v from d") == [[value.strip("'")]], "the table shows it as stored"
    ok(kc, "%sql -o declared select v from d")
    got = column_reprs(frame(kc, "declared", tmp_path)["v"])
    assert got[0] in kept, got


def test_sql_lines_after_plain_code_run_in_order(kc, db):
    """Plain code, then a store form binding what it just set, then plain code using the result."""
    msgs = ok(kc, "lim = 2\nmixed << %sql SELECT :lim + 1 AS v\nprint('v is', int(mixed['v'][0]))\n")
    out = stdout_of(msgs)
    assert STORED.match(out), out
    assert out.endswith("v is 3\n"), out
