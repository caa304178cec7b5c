//! What a build tells its user: one plain line per event, to stderr or any
//! writer (the build service sends it to the build's log).

use std::io::Write;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct Progress {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl Progress {
    pub fn new(out: Box<dyn Write + Send>) -> Progress {
        Progress {
            out: Arc::new(Mutex::new(out)),
        }
    }

    pub fn stderr() -> Progress {
        Progress::new(Box::new(std::io::stderr()))
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
}
