//! What a build tells its user: one plain line per event, to stderr or any
//! writer (the build service sends it to the build's log). On a terminal,
//! transfers also show a live byte count on one rewritten line.

use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct Progress {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
    terminal: bool,
}

impl Progress {
    pub fn new(out: Box<dyn Write + Send>) -> Progress {
        Progress {
            out: Arc::new(Mutex::new(out)),
            terminal: false,
        }
    }

    pub fn stderr() -> Progress {
        Progress {
            out: Arc::new(Mutex::new(Box::new(std::io::stderr()))),
            terminal: std::io::stderr().is_terminal(),
        }
    }

    pub fn line(&self, text: &str) {
        if let Ok(mut out) = self.out.lock() {
            let _ = writeln!(out, "{text}");
            let _ = out.flush();
        }
    }

    pub fn raw(&self, data: &[u8]) {
        if let Ok(mut out) = self.out.lock() {
            let _ = out.write_all(data);
            let _ = out.flush();
        }
    }

    /// A callback for a transfer of `total` bytes: on a terminal it
    /// redraws `label  done / total` at each whole percent; elsewhere it
    /// stays silent (the caller prints a line before and after).
    pub fn transfer(&self, label: String, total: u64) -> impl Fn(u64) + Send + Sync + use<> {
        let progress = self.clone();
        let last = Mutex::new(u64::MAX);
        move |done: u64| {
            if !progress.terminal || total == 0 {
                return;
            }
            let pct = done.saturating_mul(100) / total;
            let Ok(mut last) = last.lock() else {
                return;
            };
            if *last == pct {
                return;
            }
            *last = pct;
            let end = if done >= total { "\n" } else { "" };
            progress.raw(
                format!(
                    "\r{label}  {} / {} ({pct}%){end}",
                    crate::pull::human_size(done),
                    crate::pull::human_size(total)
                )
                .as_bytes(),
            );
        }
    }
}
