//! Snapshot summary totals (`total-*`), computed from the previous snapshot's totals.
//!
//! iceberg-rust keeps its version of this `pub(crate)`; the rules are the spec's: a total is
//! the previous total plus what was added minus what was removed, and is left out when the
//! previous snapshot did not record it (some writers don't).

use iceberg::spec::Summary;

/// (total key, added key, removed key)
const TOTALS: [(&str, &str, &str); 6] = [
    ("total-records", "added-records", "deleted-records"),
    ("total-files-size", "added-files-size", "removed-files-size"),
    ("total-data-files", "added-data-files", "deleted-data-files"),
    (
        "total-delete-files",
        "added-delete-files",
        "removed-delete-files",
    ),
    (
        "total-position-deletes",
        "added-position-deletes",
        "removed-position-deletes",
    ),
    (
        "total-equality-deletes",
        "added-equality-deletes",
        "removed-equality-deletes",
    ),
];

pub(crate) fn with_totals(mut summary: Summary, previous: Option<&Summary>) -> Summary {
    let get = |s: &Summary, key: &str| -> Option<i64> {
        s.additional_properties
            .get(key)
            .and_then(|v| v.parse().ok())
    };
    for (total, added, removed) in TOTALS {
        let previous_total = match previous {
            None => Some(0),
            Some(prev) => get(prev, total),
        };
        let Some(previous_total) = previous_total else {
            continue;
        };
        let value = previous_total + get(&summary, added).unwrap_or(0)
            - get(&summary, removed).unwrap_or(0);
        summary
            .additional_properties
            .insert(total.to_string(), value.max(0).to_string());
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use iceberg::spec::Operation;

    fn summary(pairs: &[(&str, &str)]) -> Summary {
        Summary {
            operation: Operation::Append,
            additional_properties: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn totals_add_and_subtract() {
        let prev = summary(&[("total-records", "100"), ("total-data-files", "2")]);
        let s = with_totals(
            summary(&[
                ("added-records", "10"),
                ("deleted-records", "100"),
                ("added-data-files", "1"),
                ("deleted-data-files", "2"),
            ]),
            Some(&prev),
        );
        assert_eq!(s.additional_properties["total-records"], "10");
        assert_eq!(s.additional_properties["total-data-files"], "1");
        // Unknown before: stays unknown.
        assert!(!s.additional_properties.contains_key("total-files-size"));
    }

    #[test]
    fn first_snapshot_totals_are_the_additions() {
        let s = with_totals(summary(&[("added-records", "7")]), None);
        assert_eq!(s.additional_properties["total-records"], "7");
        assert_eq!(s.additional_properties["total-delete-files"], "0");
    }
}
