//! Tests of window assignment and watermarks.

use proptest::prelude::*;

use super::*;

fn hop(size_ms: i64, slide_ms: i64) -> WindowSpec {
    WindowSpec {
        time: TimeColumn::Rowtime,
        size_ms,
        slide_ms,
    }
}

#[test]
fn a_tumbling_window_holds_its_start_and_not_its_end() {
    let w = hop(60_000, 60_000);
    assert_eq!(w.starts(60_000).collect::<Vec<_>>(), vec![60_000]);
    assert_eq!(w.starts(119_999).collect::<Vec<_>>(), vec![60_000]);
    assert_eq!(w.starts(-1).collect::<Vec<_>>(), vec![-60_000]);
    assert_eq!(w.first_start(-1), -60_000);
}

#[test]
fn a_hopping_window_whose_slide_does_not_divide_its_size() {
    let w = hop(10, 4);
    // Windows start at multiples of 4 and hold [s, s + 10).
    assert_eq!(w.starts(9).collect::<Vec<_>>(), vec![0, 4, 8]);
    assert_eq!(w.starts(10).collect::<Vec<_>>(), vec![4, 8]);
    assert_eq!(w.first_start(10), 4);
}

proptest! {
    #[test]
    fn every_window_holding_a_moment_is_listed_once(t in -1_000_000i64..1_000_000, size in 1i64..5000, slide_pick in 1i64..5000) {
        let slide = slide_pick.min(size);
        let w = hop(size, slide);
        let got: Vec<i64> = w.starts(t).collect();
        let expected: Vec<i64> = ((t - size - slide)..=(t + slide))
            .filter(|s| s.rem_euclid(slide) == 0 && *s <= t && t < s + size)
            .collect();
        prop_assert_eq!(&got, &expected);
        prop_assert_eq!(got.first().copied(), Some(w.first_start(t)));
    }
}

#[test]
fn a_row_behind_its_own_shards_watermark_is_late_whatever_other_shards_show() {
    let mut wm = Watermarks::new(5);
    wm.track(0);
    wm.track(1);
    assert_eq!(wm.observe(0, 100, 160), Ok(()));
    assert_eq!(wm.observe(0, 96, 160), Ok(()), "within the delay");
    assert_eq!(
        wm.observe(0, 94, 160),
        Err(Late::BehindShard { watermark_ms: 95 })
    );
    // Shard 1 has its own clock.
    assert_eq!(wm.observe(1, 10, 60), Ok(()));
    assert_eq!(wm.global(), Some(5));
}

#[test]
fn a_shard_that_showed_no_time_holds_windows_open_until_idle() {
    let mut wm = Watermarks::new(0);
    wm.track(0);
    wm.track(1);
    wm.observe(0, 1000, 2000).unwrap();
    assert_eq!(wm.global(), None);
    wm.caught_up(1, 99_999, false);
    assert_eq!(wm.global(), Some(1000));
    // Idle shard 1 finds the window its row belongs to closed.
    wm.close_at(1000);
    assert_eq!(
        wm.observe(1, 500, 1000),
        Err(Late::WindowClosed { closed_ms: 1000 })
    );
    assert_eq!(wm.observe(1, 1500, 2000), Ok(()));
    assert_eq!(wm.global(), Some(1000), "never moves back");
}

#[test]
fn rowtime_never_goes_back_and_moves_on_while_caught_up() {
    let mut wm = Watermarks::new(0);
    assert_eq!(wm.rowtime(0, 100), 100);
    assert_eq!(wm.rowtime(0, 90), 100, "a clock step back");
    wm.caught_up(0, 5000, true);
    assert_eq!(wm.global(), Some(5000));
    assert_eq!(wm.rowtime(0, 4000), 5000);
}

#[test]
fn finished_shards_hold_nothing_back() {
    let mut wm = Watermarks::new(0);
    wm.track(0);
    wm.track(1);
    wm.observe(1, 50, 60).unwrap();
    wm.finished(0);
    assert_eq!(wm.global(), Some(50));
}
