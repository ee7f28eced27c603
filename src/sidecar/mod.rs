//! The sidecar's side of the bridge, run inside the Python process through the extension: the
//! bar gate between a source and its sink ([`gate`]), the Alpaca frame reader ([`alpaca_frame`])
//! and the FIFO writer ([`writer`]).

pub mod alpaca_frame;
pub mod barrier;
pub mod gate;
pub mod writer;
