//! Progress bars, one per table, with rows per second; drawn only when
//! asked for and standard error is a terminal.

use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The bars of one run.
pub(crate) struct Progress {
    bars: MultiProgress,
}

impl Progress {
    pub fn new(wanted: bool) -> Self {
        let bars = if wanted && std::io::stderr().is_terminal() {
            MultiProgress::new()
        } else {
            MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
        };
        Progress { bars }
    }

    /// A bar for `table`, expecting `rows` rows.
    pub fn table(&self, table: &str, rows: u64) -> ProgressBar {
        let bar = self.bars.add(ProgressBar::new(rows));
        let style = ProgressStyle::with_template(
            "{prefix:>18} [{bar:30}] {human_pos}/{human_len} rows, {per_sec}, {elapsed} (eta {eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar.set_prefix(table.to_owned());
        bar
    }
}
