//! A minimal Rust trading engine on barbridge: subscribes to two symbols, keeps a moving
//! average from the store, and prints a signal per bar. Stops on Ctrl-C.
//!
//! ```text
//! cargo run --example engine -- /path/to/bars.fifo SPY,SPXL
//! ```

use std::sync::atomic::Ordering;
use std::time::Duration;

use barbridge::{Consumer, FeedOptions, FifoFeed, Subscription};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let mut args = std::env::args().skip(1);
    let fifo = args.next().map(Into::into).unwrap_or_else(barbridge::default_fifo_path);
    let symbols: Vec<String> = args.next().unwrap_or_else(|| "SPY,SPXL".into()).split(',').map(str::to_owned).collect();

    let consumer = Consumer::builder().stale_after(Duration::from_secs(120)).build();
    let bars = consumer.subscribe(Subscription::symbols(symbols.clone()).name("engine").capacity(4096)?);
    let feed = FifoFeed::start(consumer.clone(), &fifo, FeedOptions::default())?;
    let stop = feed.stop_flag();
    ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed))?;
    println!("engine: waiting for {symbols:?} on {}", fifo.display());

    while !feed.is_finished() {
        let Ok(event) = bars.recv_timeout(Duration::from_millis(200)) else { continue };
        let window = consumer.store().last_n(&event.symbol, 20);
        let sma = window.iter().map(|b| b.close).sum::<f64>() / window.len() as f64;
        let signal = if event.bar.close > sma { "above" } else { "below" };
        println!(
            "{} {} close {:.2} sma{} {:.2} -> {signal}{}",
            barbridge::calendar::fmt_ny(event.bar.timestamp_ms),
            event.symbol,
            event.bar.close,
            window.len(),
            sma,
            if event.correction { " (correction)" } else { "" }
        );
    }
    feed.join()?;
    Ok(())
}
