use super::*;

#[test]
fn stale_enters_once_and_recovers() {
    let clock = ManualClock::new(1_000_000);
    let health = Health::new(clock.clone(), Duration::from_secs(120));
    assert_eq!(health.tick(), FeedState::Waiting);
    health.on_message();
    assert_eq!(health.tick(), FeedState::Live);
    clock.advance(Duration::from_secs(119));
    assert_eq!(health.tick(), FeedState::Live);
    clock.advance(Duration::from_secs(1));
    assert_eq!(health.tick(), FeedState::Stale);
    clock.advance(Duration::from_secs(300));
    assert_eq!(health.tick(), FeedState::Stale);
    assert_eq!(health.counters.stale_episodes.load(Ordering::Relaxed), 1, "one episode, not one per tick");
    health.on_message();
    assert_eq!(health.tick(), FeedState::Live);
    clock.advance(Duration::from_secs(120));
    assert_eq!(health.tick(), FeedState::Stale);
    assert_eq!(health.counters.stale_episodes.load(Ordering::Relaxed), 2);
}

#[test]
fn never_receiving_anything_is_stale_too() {
    let clock = ManualClock::new(0);
    let health = Health::new(clock.clone(), Duration::from_secs(5));
    clock.advance(Duration::from_secs(5));
    assert_eq!(health.tick(), FeedState::Stale);
}

/// What the status file would say: (state, reason).
fn seen(health: &Health) -> (FeedState, Option<StaleReason>) {
    health.tick();
    let s = health.snapshot(BTreeMap::new());
    (s.state, s.stale_reason)
}

#[test]
fn only_conflicts_for_stale_after_is_stale_until_a_bar_is_delivered() {
    let clock = ManualClock::new(1_000_000);
    let health = Health::new(clock.clone(), Duration::from_secs(120));
    health.on_message();
    health.on_delivered();
    // A conflict every 30 s, heartbeats between: live until the run lasts 120 s.
    for _ in 0..4 {
        health.on_message();
        health.on_conflict();
        clock.advance(Duration::from_secs(15));
        health.on_message(); // a heartbeat
        assert_eq!(seen(&health), (FeedState::Live, None));
        clock.advance(Duration::from_secs(15));
    }
    health.on_message();
    health.on_conflict();
    assert_eq!(seen(&health), (FeedState::Stale, Some(StaleReason::OnlyConflicts)));
    assert_eq!(health.snapshot(BTreeMap::new()).conflicts_since_delivered, 5);
    // Heartbeats and more conflicts do not revive it, nor do ticks open a second episode.
    for _ in 0..10 {
        clock.advance(Duration::from_secs(30));
        health.on_message();
        health.on_conflict();
        assert_eq!(seen(&health), (FeedState::Stale, Some(StaleReason::OnlyConflicts)));
    }
    assert_eq!(health.counters.stale_episodes.load(Ordering::Relaxed), 1);
    // The next delivered bar does.
    health.on_message();
    health.on_delivered();
    assert_eq!(seen(&health), (FeedState::Live, None));
    assert_eq!(health.snapshot(BTreeMap::new()).conflicts_since_delivered, 0);
    clock.advance(Duration::from_secs(119));
    health.on_message();
    health.on_conflict();
    assert_eq!(seen(&health), (FeedState::Live, None), "a new run starts with the first conflict after the delivered bar");
}

#[test]
fn a_delivered_bar_among_the_conflicts_keeps_the_feed_live() {
    let clock = ManualClock::new(0);
    let health = Health::new(clock.clone(), Duration::from_secs(60));
    for i in 0..20 {
        health.on_message();
        health.on_conflict();
        if i % 3 == 0 {
            health.on_delivered();
        }
        clock.advance(Duration::from_secs(20));
        assert_eq!(seen(&health), (FeedState::Live, None), "step {i}");
    }
}

#[test]
fn a_burst_of_conflicts_then_heartbeats_only_is_live() {
    // A restart re-sent a few minutes with other values, then the market is quiet: the
    // conflicts stopped, so they say nothing about the feed now.
    let clock = ManualClock::new(0);
    let health = Health::new(clock.clone(), Duration::from_secs(60));
    for _ in 0..50 {
        health.on_message();
        health.on_conflict();
    }
    for _ in 0..20 {
        clock.advance(Duration::from_secs(20));
        health.on_message();
        assert_eq!(seen(&health), (FeedState::Live, None));
    }
    // Conflicts arriving again after a pause start a new run.
    health.on_conflict();
    assert_eq!(seen(&health), (FeedState::Live, None));
    assert_eq!(health.snapshot(BTreeMap::new()).conflicts_since_delivered, 1);
}

#[test]
fn nothing_received_is_its_own_reason_and_any_line_ends_it() {
    let clock = ManualClock::new(0);
    let health = Health::new(clock.clone(), Duration::from_secs(5));
    clock.advance(Duration::from_secs(5));
    assert_eq!(seen(&health), (FeedState::Stale, Some(StaleReason::NothingReceived)));
    health.on_message();
    assert_eq!(seen(&health), (FeedState::Live, None));
}

/// Through the consumer: identical re-sends (duplicates, normal after a restart) never make
/// the feed stale; the same minutes with other values do, and a new minute ends it.
#[test]
fn consumer_duplicates_are_not_conflicts_and_a_new_minute_revives() {
    const T0: i64 = 1_759_930_080_000;
    let line = |minute: i64, close: f64| {
        format!(
            r#"{{"symbol":"SPY","timestamp_ms":{},"open":{close},"high":{close},"low":{close},"close":{close},"volume":1}}"#,
            T0 + minute * 60_000
        )
    };
    let clock = ManualClock::new(T0 + 3_600_000);
    let consumer = crate::Consumer::builder().clock(clock.clone()).stale_after(Duration::from_secs(60)).build().unwrap();
    for m in 0..5 {
        consumer.ingest_line(line(m, 10.0).as_bytes()).unwrap();
    }
    let health = consumer.health();
    for round in 0..10 {
        clock.advance(Duration::from_secs(20));
        consumer.ingest_line(line(round % 5, 10.0).as_bytes()).unwrap();
        assert_eq!(seen(health), (FeedState::Live, None), "duplicates, round {round}");
    }
    for round in 0..3 {
        clock.advance(Duration::from_secs(20));
        consumer.ingest_line(line(round % 5, 11.0).as_bytes()).unwrap();
        assert_eq!(seen(health), (FeedState::Live, None), "conflicts for {} s", 20 * round);
    }
    clock.advance(Duration::from_secs(20));
    consumer.ingest_line(line(4, 11.0).as_bytes()).unwrap();
    assert_eq!(seen(health), (FeedState::Stale, Some(StaleReason::OnlyConflicts)));
    consumer.ingest_line(line(0, 10.0).as_bytes()).unwrap(); // a duplicate: still nothing delivered
    assert_eq!(seen(health), (FeedState::Stale, Some(StaleReason::OnlyConflicts)));
    consumer.ingest_line(line(5, 12.0).as_bytes()).unwrap();
    assert_eq!(seen(health), (FeedState::Live, None));
    let c = health.counters.snapshot();
    assert_eq!((c.bars_accepted, c.duplicates, c.conflicts, c.stale_episodes), (6, 11, 4, 1));
}

#[test]
fn seq_gaps_and_writer_restarts() {
    let health = Health::new(ManualClock::new(0), Duration::from_secs(5));
    for seq in [1, 2, 3, 7, 8, 1, 2] {
        health.on_seq("w1", seq);
    }
    health.on_seq("w2", 1);
    let c = health.counters.snapshot();
    assert_eq!((c.seq_gaps, c.lines_lost, c.writer_sessions), (1, 3, 3));
}

#[test]
fn rate_limited_log_counts_suppressed() {
    let rl = RateLimitedLog::new(Duration::from_secs(10), 2);
    let mut s = 0;
    assert!(rl.allow("k", 0, &mut s));
    assert!(rl.allow("k", 1, &mut s));
    assert!(!rl.allow("k", 2, &mut s));
    assert!(!rl.allow("k", 3, &mut s));
    assert!(rl.allow("k", 10_000, &mut s));
    assert_eq!(s, 2);
}
