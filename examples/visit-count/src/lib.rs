//! Visit count (seed 000, "stateful computation"): a running count of visits per URL
//! from nginx-style access-log records. Keyed by `/url`; one `ValueState<u64>` per URL.

use guest_sdk::{Context, Operator, Result, ValueState};
use serde::{Deserialize, Serialize};

/// Visits so far, per URL.
pub const VISITS: ValueState<u64> = ValueState::new("visits");

/// An access-log record; fields other than `url` are ignored.
#[derive(Deserialize)]
pub struct Visit {
    /// The requested URL.
    pub url: String,
}

/// The count after this visit.
#[derive(Serialize)]
pub struct Count {
    /// The URL.
    pub url: String,
    /// Visits to it so far, this one included.
    pub count: u64,
}

/// The operator.
#[derive(Default)]
pub struct VisitCount;

impl Operator for VisitCount {
    type Input = Visit;
    type Output = Count;

    fn process(&mut self, visit: Visit, ctx: &mut Context<Count>) -> Result<()> {
        let count = VISITS.get()?.unwrap_or(0) + 1;
        VISITS.set(&count)?;
        ctx.emit(Count {
            url: visit.url,
            count,
        })
    }
}

guest_sdk::export_operator!(VisitCount);

#[cfg(test)]
mod tests {
    use super::*;
    use guest_sdk::testing::Harness;
    use serde_json::json;

    fn visit(url: &str) -> serde_json::Value {
        json!({"@timestamp": "18/Apr/2019:00:00:00", "remote_addr": "127.0.0.1", "request": "GET", "url": url})
    }

    #[test]
    fn counts_each_url_separately() {
        let mut h = Harness::<VisitCount>::new().unwrap();
        assert_eq!(
            h.push("/api/a", visit("/api/a")).unwrap(),
            [json!({"url": "/api/a", "count": 1})]
        );
        assert_eq!(
            h.push("/api/b", visit("/api/b")).unwrap(),
            [json!({"url": "/api/b", "count": 1})]
        );
        assert_eq!(
            h.push("/api/a", visit("/api/a")).unwrap(),
            [json!({"url": "/api/a", "count": 2})]
        );
        assert_eq!(h.state(&VISITS, "/api/a"), Some(2));
        assert_eq!(h.state(&VISITS, "/api/c"), None);
    }

    #[test]
    fn a_restored_instance_continues_the_count() {
        let mut h = Harness::<VisitCount>::new().unwrap();
        h.push_batch(&[
            ("/a", visit("/a")),
            ("/a", visit("/a")),
            ("/b", visit("/b")),
        ])
        .unwrap();
        let mut restored = Harness::<VisitCount>::restore(&h.snapshot()).unwrap();
        assert_eq!(
            restored.push("/a", visit("/a")).unwrap(),
            [json!({"url": "/a", "count": 3})]
        );
        // The snapshot is a copy: the original goes on independently.
        assert_eq!(
            h.push("/b", visit("/b")).unwrap(),
            [json!({"url": "/b", "count": 2})]
        );
        assert_eq!(restored.state(&VISITS, "/b"), Some(1));
    }

    #[test]
    fn a_record_without_url_fails_with_a_message() {
        let mut h = Harness::<VisitCount>::new().unwrap();
        let err = h.push("x", json!({"path": "/a"})).unwrap_err();
        assert!(err.message().contains("missing field `url`"), "{err}");
    }
}
