//! Tests of open windows' groups and snapshots.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{Int64Array, StringArray};
use arrow_schema::{DataType, Field, Schema};
use datafusion_physical_expr::aggregate::AggregateExprBuilder;
use datafusion_physical_expr::expressions::col;

use super::*;

fn state(groups_max: usize) -> GroupState {
    let input = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("v", DataType::Int64, true),
    ]));
    let sum = AggregateExprBuilder::new(
        datafusion_functions_aggregate::sum::sum_udaf(),
        vec![col("v", &input).unwrap()],
    )
    .schema(input.clone())
    .alias("total")
    .build()
    .unwrap();
    let grouped = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Utf8, true),
        Field::new("total", DataType::Int64, true),
    ]));
    GroupState::new(grouped, vec![Arc::new(sum)], groups_max).unwrap()
}

fn add(s: &mut GroupState, window: WindowKey, keys: &[&str], values: &[i64]) -> Vec<usize> {
    let k: ArrayRef = Arc::new(StringArray::from(keys.to_vec()));
    let v: ArrayRef = Arc::new(Int64Array::from(values.to_vec()));
    s.update(window, &[k], &[vec![v]]).unwrap()
}

fn totals(b: &RecordBatch) -> Vec<(String, i64)> {
    let k = b.column(0).as_string::<i32>();
    let t = b.column(1).as_primitive::<Int64Type>();
    (0..b.num_rows())
        .map(|i| (k.value(i).to_string(), t.value(i)))
        .collect()
}

#[test]
fn windows_close_by_end_with_groups_in_key_order() {
    let mut s = state(10);
    add(&mut s, (60, 0), &["b", "a", "b"], &[1, 2, 3]);
    add(&mut s, (120, 60), &["a"], &[10]);
    assert_eq!((s.windows(), s.groups()), (2, 3));
    let closed = s.close(60).unwrap();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].0, (60, 0));
    assert_eq!(totals(&closed[0].1), vec![("a".into(), 2), ("b".into(), 4)]);
    assert_eq!((s.windows(), s.groups()), (1, 1));
}

#[test]
fn a_row_over_the_group_bound_is_refused_and_counts_nowhere() {
    let mut s = state(2);
    assert_eq!(
        add(&mut s, (60, 0), &["a", "b", "c", "a"], &[1, 1, 5, 1]),
        vec![2]
    );
    let closed = s.close(60).unwrap();
    assert_eq!(totals(&closed[0].1), vec![("a".into(), 2), ("b".into(), 1)]);
}

#[test]
fn a_snapshot_restores_into_the_same_results() {
    let mut s = state(10);
    add(&mut s, (60, 0), &["a", "b"], &[1, 2]);
    add(&mut s, (120, 60), &["a"], &[7]);
    let snap = s.snapshot().unwrap();
    // The snapshot left the windows as they were.
    add(&mut s, (60, 0), &["a"], &[100]);
    let mut r = state(10);
    let mut windows = vec![(60, 0), (120, 60)].into_iter();
    r.restore(&snap, |_| windows.next()).unwrap();
    add(&mut r, (60, 0), &["a"], &[100]);
    let (a, b) = (s.close(1000).unwrap(), r.close(1000).unwrap());
    assert_eq!(a.len(), 2);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.0, y.0);
        assert_eq!(totals(&x.1), totals(&y.1));
    }
}
