//! Against a real server when `PXKERNEL_TEST_PG_URL` names one (the Python
//! suites start one; these run only when it is set).

use super::*;
use crate::value::Value;

fn url() -> Option<PgUrl> {
    let text = std::env::var("PXKERNEL_TEST_PG_URL").ok()?;
    match crate::url::parse(&text).ok()? {
        crate::url::Url::Postgres(p) => Some(p),
        _ => None,
    }
}

#[test]
fn types_pages_params_and_errors() {
    let Some(url) = url() else { return };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut pg = Postgres::connect(&url, None).await.unwrap();
        let out = pg
            .run(
                "select 1::int2 a, 2::int4 b, 3::int8 c, 1.5::float8 d, 12.340::numeric e, 'x'::text f, \
                 true g, '2024-01-01'::date h, '2024-01-01 00:00:01'::timestamp i, \
                 '2024-01-01 00:00:01+00'::timestamptz j, '{\"a\":1}'::jsonb k, null::text l, \
                 array[1,2] m, '1 day'::interval n, gen_random_uuid() is not null o",
                &[],
                Want::All,
            )
            .await
            .unwrap();
        let Outcome::Rows(rows) = out else { panic!() };
        let texts: Vec<Option<String>> = rows.rows[0].iter().map(Value::text).collect();
        assert_eq!(
            texts,
            [
                Some("1"), Some("2"), Some("3"), Some("1.5"), Some("12.340"), Some("x"), Some("True"),
                Some("2024-01-01"), Some("2024-01-01 00:00:01"), Some("2024-01-01 00:00:01+00:00"),
                Some("{\"a\": 1}"), None, Some("{1,2}"), Some("1 day"), Some("True"),
            ]
            .map(|o| o.map(str::to_owned))
        );
        let sql = "select g from generate_series(1, 1000) g";
        let out = pg.run(sql, &[], Want::Page(10)).await.unwrap();
        let Outcome::Rows(rows) = out else { panic!() };
        assert_eq!((rows.rows.len(), rows.more), (10, true));
        assert_eq!(pg.count(sql, &[]).await, Some(1000));
        assert_eq!(pg.count("select 1 -- trailing comment", &[]).await, Some(1));
        let out = pg
            .run("select $1::int + $2::numeric, $3::text", &[Value::Int(2), Value::Decimal("0.5".into()), Value::Text("t".into())], Want::All)
            .await
            .unwrap();
        let Outcome::Rows(rows) = out else { panic!() };
        assert_eq!(rows.rows[0][0].text().unwrap(), "2.5");
        let e = pg.run("selec 1", &[], Want::All).await.unwrap_err();
        assert_eq!(e.sqlstate.as_deref(), Some("42601"));
        assert_eq!(e.position, Some(1));
    });
}
