//! Prometheus counters, kept with atomics and one small map so recording a
//! request costs next to nothing.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(&'static str, &'static str, u16), u64>>,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl Metrics {
    pub fn request(&self, route: &'static str, method: &'static str, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((route, method, status)).or_default() += 1;
    }

    pub fn add_in(&self, n: u64) {
        self.bytes_in.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_out(&self, n: u64) {
        self.bytes_out.fetch_add(n, Ordering::Relaxed);
    }

    /// The exposition text; gauges measured by the caller are passed in.
    pub fn render(&self, open_uploads: usize, stored: Option<(u64, u64)>) -> String {
        let mut out = String::new();
        out.push_str(
            "# HELP kiln_registry_requests_total HTTP requests by route, method and status.\n",
        );
        out.push_str("# TYPE kiln_registry_requests_total counter\n");
        for ((route, method, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "kiln_registry_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}} {n}"
            );
        }
        let counters = [
            (
                "kiln_registry_received_bytes_total",
                "Blob bytes received.",
                self.bytes_in.load(Ordering::Relaxed),
            ),
            (
                "kiln_registry_sent_bytes_total",
                "Blob bytes sent.",
                self.bytes_out.load(Ordering::Relaxed),
            ),
        ];
        for (name, help, v) in counters {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP kiln_registry_open_uploads Upload sessions open in this process.\n# TYPE kiln_registry_open_uploads gauge\nkiln_registry_open_uploads {open_uploads}"
        );
        if let Some((blobs, bytes)) = stored {
            let _ = writeln!(
                out,
                "# HELP kiln_registry_stored_blobs Blobs in storage.\n# TYPE kiln_registry_stored_blobs gauge\nkiln_registry_stored_blobs {blobs}\n# HELP kiln_registry_stored_bytes Bytes of blobs in storage.\n# TYPE kiln_registry_stored_bytes gauge\nkiln_registry_stored_bytes {bytes}"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::default();
        m.request("manifest", "GET", 200);
        m.request("manifest", "GET", 200);
        m.add_in(5);
        let text = m.render(2, Some((1, 10)));
        assert!(text.contains(
            "kiln_registry_requests_total{route=\"manifest\",method=\"GET\",status=\"200\"} 2"
        ));
        assert!(text.contains("kiln_registry_received_bytes_total 5"));
        assert!(text.contains("kiln_registry_open_uploads 2"));
        assert!(text.contains("kiln_registry_stored_bytes 10"));
    }
}
