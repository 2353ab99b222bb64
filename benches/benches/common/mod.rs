//! Criterion settings shared by every bench file (modest times so the full suite fits in about
//! a quarter of an hour on two cores). The runner's quick mode overrides them from the command
//! line (`--quick --measurement-time ...`), which criterion applies after this configuration.

use std::time::Duration;

use criterion::Criterion;

/// The suite's default criterion configuration.
pub fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .sample_size(20)
        .without_plots()
}
