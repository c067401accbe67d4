//! Iceberg catalogs and destinations: defaults, and each error at its path.

use crate::config::{CatalogDatabase, Destination, Warehouse, parse};

fn stream(dest: &str, encoding: &str) -> String {
    format!(
        "data_dir: /tmp/h\nstreams:\n  clicks:\n{encoding}    destination:\n      type: iceberg\n{dest}"
    )
}

const PARQUET: &str = "    encoding:\n      format: parquet\n      schema:\n        - { name: ts, type: \"timestamp[ms, UTC]\", nullable: false }\n        - { name: user_id, type: int64 }\n        - { name: tags, type: \"list<string>\" }\n";

fn errors(yaml: &str) -> Vec<String> {
    match parse(yaml) {
        Ok(_) => panic!("expected errors for:\n{yaml}"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn a_destination_gets_the_default_catalog_its_schema_and_spec() {
    let c = parse(&stream(
        "      partition_by: [\"day(ts)\", \"bucket(16, user_id)\"]\n",
        PARQUET,
    ))
    .unwrap();
    let Destination::Iceberg(d) = &c.streams["clicks"].destination else {
        panic!("not iceberg");
    };
    assert_eq!(d.catalog.name, "hydrant");
    assert_eq!(
        d.catalog.database,
        CatalogDatabase::Sqlite("/tmp/h/iceberg/catalog.db".into())
    );
    assert_eq!(
        d.catalog.warehouse,
        Warehouse::Local("/tmp/h/iceberg/warehouse".into())
    );
    assert_eq!(
        (d.namespace.as_str(), d.table.as_str()),
        ("hydrant", "clicks")
    );
    assert_eq!(d.commit_interval.as_secs(), 60);
    assert_eq!(d.file_bytes_max, 128 << 20);
    let cols = d.columns.as_ref().unwrap();
    let ts = cols.schema.field_by_name("ts").unwrap();
    assert_eq!((ts.id, ts.required), (1, true));
    assert_eq!(ts.field_type.to_string(), "timestamptz");
    assert!(cols.schema.field_by_name("tags").is_some());
    let names: Vec<&str> = cols.spec.fields().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["ts_day", "user_id_bucket"]);
}

#[test]
fn an_s3_object_store_puts_the_default_warehouse_in_its_iceberg_bucket() {
    let yaml = stream("", PARQUET).replace(
        "streams:",
        "object_store: { type: s3, endpoint: \"http://127.0.0.1:3900\", region: garage }\nstreams:",
    );
    let c = parse(&yaml).unwrap();
    assert_eq!(
        c.iceberg_catalogs["hydrant"].warehouse.location(),
        "s3://iceberg/warehouse"
    );
}

#[test]
fn bad_destinations_name_the_field() {
    let e = errors(&stream("      catalog: nowhere\n", PARQUET));
    assert!(
        e.iter()
            .any(|e| e.starts_with("streams.clicks.destination.catalog: `nowhere`")),
        "{e:?}"
    );
    let e = errors(&stream(
        "      partition_by: [\"week(ts)\", \"day(nope)\", \"bucket(x, user_id)\"]\n",
        PARQUET,
    ));
    assert!(
        e.iter().any(|e| e.starts_with(
            "streams.clicks.destination.partition_by[0]: `week(ts)` is not a partition transform"
        )),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e
                .starts_with("streams.clicks.destination.partition_by[1]: `nope` is not a column")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.starts_with("streams.clicks.destination.partition_by[2]:")),
        "{e:?}"
    );
    let e = errors(&stream("", ""));
    assert!(
        e.iter().any(|e| e
            .starts_with("streams.clicks.encoding.format: an iceberg destination writes Parquet")),
        "{e:?}"
    );
    let e = errors(&stream(
        "      commit_interval_secs: 0\n      file_size_mb: 9000\n      bucket: b\n",
        PARQUET,
    ));
    assert!(
        e.iter()
            .any(|e| e
                .starts_with("streams.clicks.destination.commit_interval_secs: 0 is out of range")),
        "{e:?}"
    );
    assert!(e.iter().any(|e| e.starts_with("streams.clicks.destination.file_size_mb: 9000 is out of range")), "{e:?}");
    assert!(
        e.iter()
            .any(|e| e.starts_with("streams.clicks.destination.bucket: does not apply")),
        "{e:?}"
    );
    let unsigned = PARQUET.replace("type: int64", "type: uint64");
    let e = errors(&stream("", &unsigned));
    assert!(
        e.iter().any(|e| e
            .starts_with("streams.clicks.encoding.schema[1].type: Iceberg has no unsigned 64-bit")),
        "{e:?}"
    );
    let zoned = PARQUET.replace("timestamp[ms, UTC]", "timestamp[ms, Europe/Oslo]");
    let e = errors(&stream("", &zoned));
    assert!(
        e.iter()
            .any(|e| e
                .starts_with("streams.clicks.encoding.schema[0].type: Iceberg timestamps are UTC")),
        "{e:?}"
    );
}

#[test]
fn bad_catalogs_name_the_field() {
    let e = errors(
        "iceberg:\n  catalogs:\n    lake: { uri: \"mysql://x\", warehouse: /w }\n    s3lake: { uri: \"sqlite:///c.db\", warehouse: \"s3://lake/w\" }\n    \"bad name\": { uri: \"sqlite:///c.db\", warehouse: /w }\n    r: { type: rest, uri: \"ftp://x\", warehouse: /w }\n    q: { type: hive, uri: \"http://x\", warehouse: /w }\n",
    );
    assert!(
        e.iter()
            .any(|e| e.starts_with("iceberg.catalogs.lake.uri: must start with sqlite://")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.starts_with("iceberg.catalogs.s3lake.store: missing")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.starts_with("iceberg.catalogs.bad name: a catalog name")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.starts_with("iceberg.catalogs.r.uri: a rest catalog's uri")),
        "{e:?}"
    );
    assert!(
        e.iter()
            .any(|e| e.starts_with("iceberg.catalogs.q.type: `hive` is not a catalog type")),
        "{e:?}"
    );
}

#[test]
fn partition_transforms_parse() {
    use super::parse_partition;
    let f = parse_partition("bucket(16, user_id)").unwrap();
    assert_eq!(
        (f.transform.as_str(), f.column.as_str()),
        ("bucket[16]", "user_id")
    );
    let f = parse_partition(" truncate(4,name) ").unwrap();
    assert_eq!(
        (f.transform.as_str(), f.column.as_str()),
        ("truncate[4]", "name")
    );
    assert_eq!(parse_partition("hour(ts)").unwrap().transform, "hour");
    assert!(parse_partition("bucket(0, x)").is_err());
    assert!(parse_partition("day()").is_err());
    assert!(parse_partition("day(ts").is_err());
}
