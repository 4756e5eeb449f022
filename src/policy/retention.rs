//! The retention policy engine behind `artifactctl cleanup`: pure, no I/O.
//!
//! Rules combine as restic's `forget` combines them: a run is kept if ANY
//! rule keeps it, and each rule looks at the whole namespace on its own.
//! Overlaps are therefore free: with `--keep 3 --keep-daily 2`, today's
//! newest run is both one of the 3 newest and today's daily, and the engine
//! adds only yesterday's newest on top. `docs/cleanup.md` has worked examples.
//!
//! Calendar periods are UTC days, ISO weeks and months (run ids are UTC too).

use std::collections::HashSet;

use chrono::{DateTime, Datelike, Duration, Utc};

/// A retention policy. Every rule is optional; zero counts mean "not set".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// The N newest runs.
    pub keep_last: usize,
    /// Runs created within this span before `now`.
    pub keep_within: Option<Duration>,
    /// The newest run of each of the last N days that have runs.
    pub keep_daily: usize,
    pub keep_weekly: usize,
    pub keep_monthly: usize,
    /// The newest runs that fit in this many bytes, counted together with
    /// everything that stays anyway (protected or kept by another rule).
    pub max_size: Option<u64>,
}

impl Policy {
    /// True when no rule is set: such a policy would keep nothing, and the
    /// caller refuses it rather than guess.
    pub fn is_empty(&self) -> bool {
        self.keep_last == 0
            && self.keep_within.is_none()
            && self.keep_daily == 0
            && self.keep_weekly == 0
            && self.keep_monthly == 0
            && self.max_size.is_none()
    }

    /// The rules in words, as the plan prints them (`--keep 5 --keep-within 7d`).
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.keep_last > 0 {
            parts.push(format!("--keep {}", self.keep_last));
        }
        if let Some(d) = self.keep_within {
            parts.push(format!("--keep-within {}", format_duration(d)));
        }
        for (flag, n) in [
            ("--keep-daily", self.keep_daily),
            ("--keep-weekly", self.keep_weekly),
            ("--keep-monthly", self.keep_monthly),
        ] {
            if n > 0 {
                parts.push(format!("{flag} {n}"));
            }
        }
        if let Some(size) = self.max_size {
            parts.push(format!("--max-size {}", format_size(size)));
        }
        parts.join(" ")
    }
}

/// One run of a namespace as the engine sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub created_at: DateTime<Utc>,
    /// Tie-breaker for runs created in the same instant (ids sort in time).
    pub id: String,
    pub size_bytes: u64,
    /// Stays whatever the policy says (latest, pinned, lineage, ...); counts
    /// towards `--max-size`.
    pub protected: bool,
}

/// Why the policy keeps a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeepReason {
    /// Rank among the newest runs (1 = newest).
    Last(usize),
    Within(Duration),
    Daily(String),
    Weekly(String),
    Monthly(String),
    FitsMaxSize(u64),
}

impl KeepReason {
    pub fn describe(&self) -> String {
        match self {
            KeepReason::Last(rank) => format!("--keep: newest #{rank}"),
            KeepReason::Within(d) => format!("--keep-within {}", format_duration(*d)),
            KeepReason::Daily(day) => format!("--keep-daily: newest of {day}"),
            KeepReason::Weekly(week) => format!("--keep-weekly: newest of {week}"),
            KeepReason::Monthly(month) => format!("--keep-monthly: newest of {month}"),
            KeepReason::FitsMaxSize(max) => format!("--max-size {}: fits", format_size(*max)),
        }
    }
}

/// The verdict on one candidate, in the order the candidates were given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Empty when no rule keeps the run.
    pub kept_by: Vec<KeepReason>,
    /// `--max-size` was set and the run is among the oldest that must go for
    /// the namespace to fit.
    pub over_max_size: bool,
}

impl Verdict {
    pub fn keeps(&self) -> bool {
        !self.kept_by.is_empty()
    }
}

/// Apply `policy` to the runs of one namespace, as of `now`.
pub fn apply(policy: &Policy, candidates: &[Candidate], now: DateTime<Utc>) -> Vec<Verdict> {
    let mut verdicts = vec![
        Verdict {
            kept_by: Vec::new(),
            over_max_size: false,
        };
        candidates.len()
    ];
    // Newest first; ties broken by id so the order is total and repeatable.
    let mut order: Vec<usize> = (0..candidates.len()).collect();
    order.sort_by(|&a, &b| {
        let (a, b) = (&candidates[a], &candidates[b]);
        (b.created_at, &b.id).cmp(&(a.created_at, &a.id))
    });

    for (rank, &i) in order.iter().take(policy.keep_last).enumerate() {
        verdicts[i].kept_by.push(KeepReason::Last(rank + 1));
    }
    if let Some(span) = policy.keep_within {
        // A span reaching before the calendar's start keeps everything.
        let since = now
            .checked_sub_signed(span)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        for &i in &order {
            if candidates[i].created_at >= since {
                verdicts[i].kept_by.push(KeepReason::Within(span));
            }
        }
    }
    for (count, period) in [
        (policy.keep_daily, Period::Day),
        (policy.keep_weekly, Period::Week),
        (policy.keep_monthly, Period::Month),
    ] {
        keep_newest_per_period(candidates, &order, count, period, &mut verdicts);
    }
    if let Some(max) = policy.max_size {
        apply_max_size(candidates, &order, max, &mut verdicts);
    }
    verdicts
}

/// The calendar periods of `--keep-daily`, `--keep-weekly`, `--keep-monthly`.
#[derive(Debug, Clone, Copy)]
enum Period {
    Day,
    Week,
    Month,
}

impl Period {
    /// The period `t` falls in, as a label: `2026-11-23`, `2026-W48`, `2026-11`.
    fn label(self, t: DateTime<Utc>) -> String {
        match self {
            Period::Day => t.format("%Y-%m-%d").to_string(),
            Period::Week => {
                let week = t.iso_week();
                format!("{}-W{:02}", week.year(), week.week())
            }
            Period::Month => t.format("%Y-%m").to_string(),
        }
    }

    fn reason(self, label: String) -> KeepReason {
        match self {
            Period::Day => KeepReason::Daily(label),
            Period::Week => KeepReason::Weekly(label),
            Period::Month => KeepReason::Monthly(label),
        }
    }
}

/// Walk newest first; the first run met in each new period is that period's
/// newest. Stop after `count` periods: periods without runs do not count.
fn keep_newest_per_period(
    candidates: &[Candidate],
    order: &[usize],
    count: usize,
    period: Period,
    verdicts: &mut [Verdict],
) {
    if count == 0 {
        return;
    }
    let mut seen = HashSet::new();
    for &i in order {
        let label = period.label(candidates[i].created_at);
        if seen.contains(&label) {
            continue;
        }
        if seen.len() == count {
            break;
        }
        seen.insert(label.clone());
        verdicts[i].kept_by.push(period.reason(label));
    }
}

/// Everything that stays anyway (protected, or kept by another rule) counts
/// first; then the remaining runs are kept newest first while they fit. The
/// ones that do not fit are the oldest, so this is "remove the oldest until
/// the namespace fits", expressed as a keep rule like the others.
fn apply_max_size(candidates: &[Candidate], order: &[usize], max: u64, verdicts: &mut [Verdict]) {
    let mut total: u64 = order
        .iter()
        .filter(|&&i| candidates[i].protected || verdicts[i].keeps())
        .map(|&i| candidates[i].size_bytes)
        .sum();
    let mut full = false;
    for &i in order {
        if candidates[i].protected || verdicts[i].keeps() {
            continue;
        }
        let size = candidates[i].size_bytes;
        if !full && total.saturating_add(size) <= max {
            total += size;
            verdicts[i].kept_by.push(KeepReason::FitsMaxSize(max));
        } else {
            full = true;
            verdicts[i].over_max_size = true;
        }
    }
}

const DURATION_HELP: &str =
    "use a number and a unit, s (seconds), h (hours), d (days) or w (weeks), possibly several: 7d, 12h, 2w, 1d12h";

/// Parse a span such as `7d`, `12h`, `2w`, `90s` or `1w2d`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(format!("empty duration: {DURATION_HELP}"));
    }
    let mut total = Duration::zero();
    let mut digits = String::new();
    for c in trimmed.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits
            .parse()
            .map_err(|_| format!("bad duration '{text}': {DURATION_HELP}"))?;
        digits.clear();
        let seconds_per_unit = match c.to_ascii_lowercase() {
            's' => 1,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(format!("bad duration '{text}': {DURATION_HELP}")),
        };
        let part = n
            .checked_mul(seconds_per_unit)
            .and_then(Duration::try_seconds)
            .ok_or_else(|| format!("duration '{text}' is too long"))?;
        total += part;
    }
    if !digits.is_empty() {
        return Err(format!(
            "bad duration '{text}': the number {digits} has no unit; {DURATION_HELP}"
        ));
    }
    Ok(total)
}

/// A span in days, hours and seconds, as [`parse_duration`] reads it (weeks
/// are spelled as days: `14d` reads better next to `--keep-within 14d`).
pub fn format_duration(d: Duration) -> String {
    let mut seconds = d.num_seconds();
    if seconds == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [('d', 86_400), ('h', 3600), ('s', 1)] {
        if seconds >= size {
            out.push_str(&format!("{}{unit}", seconds / size));
            seconds %= size;
        }
    }
    out
}

const SIZE_HELP: &str = "use a number and a unit: B, KB/MB/GB/TB (powers of 1000) or KiB/MiB/GiB/TiB, K/M/G/T (powers of 1024), e.g. 50GB, 1.5GiB";

/// Parse a size such as `50GB`, `1.5GiB`, `500M` or `1024`.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(trimmed.len());
    let (number, unit) = trimmed.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("bad size '{text}': {SIZE_HELP}"))?;
    let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "tb" => 1e12,
        "k" | "kib" => 1024.0,
        "m" | "mib" => 1024f64.powi(2),
        "g" | "gib" => 1024f64.powi(3),
        "t" | "tib" => 1024f64.powi(4),
        _ => return Err(format!("bad size '{text}': {SIZE_HELP}")),
    };
    let bytes = (value * multiplier).round();
    if !bytes.is_finite() || bytes > u64::MAX as f64 {
        return Err(format!("size '{text}' is too large"));
    }
    Ok(bytes as u64)
}

/// A size in the binary units [`parse_size`] reads back exactly when whole.
pub fn format_size(bytes: u64) -> String {
    for (unit, size) in [
        ("TiB", 1u64 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ] {
        if bytes >= size {
            let value = bytes as f64 / size as f64;
            return if bytes % size == 0 {
                format!("{}{unit}", bytes / size)
            } else {
                format!("{value:.1}{unit}")
            };
        }
    }
    format!("{bytes}B")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    fn runs(times: &[DateTime<Utc>]) -> Vec<Candidate> {
        times
            .iter()
            .map(|t| Candidate {
                created_at: *t,
                id: t.format("%Y%m%d_%H%M%S").to_string(),
                size_bytes: 10,
                protected: false,
            })
            .collect()
    }

    /// The ids the policy keeps, newest first.
    fn kept(policy: &Policy, candidates: &[Candidate], now: DateTime<Utc>) -> Vec<String> {
        let verdicts = apply(policy, candidates, now);
        let mut ids: Vec<&Candidate> = candidates
            .iter()
            .zip(&verdicts)
            .filter(|(_, v)| v.keeps())
            .map(|(c, _)| c)
            .collect();
        ids.sort_by_key(|c| std::cmp::Reverse(c.created_at));
        ids.into_iter().map(|c| c.id[..11].to_string()).collect()
    }

    fn daily(from: DateTime<Utc>, days: i64) -> Vec<DateTime<Utc>> {
        (0..days).map(|d| from + Duration::days(d)).collect()
    }

    #[test]
    fn table_of_single_and_combined_rules() {
        // Hourly runs over three days, 2026-11-21 00:00 .. 2026-11-23 23:00.
        let hourly: Vec<_> = (0..72)
            .map(|h| at(2026, 11, 21, 0) + Duration::hours(h))
            .collect();
        let now = at(2026, 11, 24, 0);
        let cases: Vec<(&str, Policy, Vec<&str>)> = vec![
            (
                "keep 3",
                Policy {
                    keep_last: 3,
                    ..Default::default()
                },
                vec!["20261123_23", "20261123_22", "20261123_21"],
            ),
            (
                "keep-daily 2 takes the newest of the last two days",
                Policy {
                    keep_daily: 2,
                    ..Default::default()
                },
                vec!["20261123_23", "20261122_23"],
            ),
            (
                // restic issue #1562: keep-last and keep-daily overlap on the newest run.
                "keep 3 + keep-daily 2 overlap",
                Policy {
                    keep_last: 3,
                    keep_daily: 2,
                    ..Default::default()
                },
                vec!["20261123_23", "20261123_22", "20261123_21", "20261122_23"],
            ),
            (
                "keep-within 2h is measured from now",
                Policy {
                    keep_within: Some(Duration::hours(2)),
                    ..Default::default()
                },
                vec!["20261123_23", "20261123_22"],
            ),
            (
                "keep-daily beyond the days that have runs keeps one per day that has",
                Policy {
                    keep_daily: 10,
                    ..Default::default()
                },
                vec!["20261123_23", "20261122_23", "20261121_23"],
            ),
            ("empty policy keeps nothing", Policy::default(), vec![]),
        ];
        let candidates = runs(&hourly);
        for (name, policy, want) in cases {
            assert_eq!(kept(&policy, &candidates, now), want, "{name}");
        }
    }

    #[test]
    fn a_span_longer_than_the_calendar_keeps_everything() {
        let candidates = runs(&[at(2026, 1, 1, 0)]);
        let span = parse_duration("99999999999d").unwrap();
        let policy = Policy {
            keep_within: Some(span),
            ..Default::default()
        };
        assert_eq!(kept(&policy, &candidates, at(2026, 2, 1, 0)).len(), 1);
    }

    #[test]
    fn periods_without_runs_do_not_count() {
        // Runs on 1, 2 and 10 November only: the last 2 days *with runs*.
        let candidates = runs(&[at(2026, 11, 1, 9), at(2026, 11, 2, 9), at(2026, 11, 10, 9)]);
        let policy = Policy {
            keep_daily: 2,
            ..Default::default()
        };
        assert_eq!(
            kept(&policy, &candidates, at(2026, 11, 20, 0)),
            vec!["20261110_09", "20261102_09"]
        );
    }

    #[test]
    fn restic_documented_daily_weekly_monthly_overlap() {
        // restic's docs: with daily snapshots, `--keep-daily 7 --keep-weekly 5
        // --keep-monthly 12` keeps the 7 most recent dailies, then 4 more
        // weekly ones (the 7 dailies already include one week's last), then
        // 11 or 12 monthly ones (11 when the weeklies cross a month boundary).
        // Daily runs from 2025-01-01 to Wednesday 2026-04-15 (470 days).
        let candidates = runs(&daily(at(2025, 1, 1, 12), 470));
        let now = at(2026, 4, 16, 0);
        let policy = Policy {
            keep_daily: 7,
            keep_weekly: 5,
            keep_monthly: 12,
            ..Default::default()
        };
        let verdicts = apply(&policy, &candidates, now);
        let count = |f: &dyn Fn(&KeepReason) -> bool| {
            verdicts.iter().filter(|v| v.kept_by.iter().any(f)).count()
        };
        assert_eq!(count(&|r| matches!(r, KeepReason::Daily(_))), 7);
        assert_eq!(count(&|r| matches!(r, KeepReason::Weekly(_))), 5);
        assert_eq!(count(&|r| matches!(r, KeepReason::Monthly(_))), 12);
        // Here the 7 dailies (04-09..04-15) hold two weeklies: 04-15, newest
        // of the unfinished ISO week 16, and Sunday 04-12; so the weeklies add
        // only 3 (Sundays 04-05, 03-29, 03-22). None of those ends a month, so
        // the monthlies add 11 month-ends (March 2026 back to May 2025) to
        // April's newest, 04-15, already a daily: 7 + 3 + 11.
        let kept_ids = kept(&policy, &candidates, now);
        assert_eq!(kept_ids.len(), 7 + 3 + 11, "{kept_ids:?}");
        assert_eq!(kept_ids[0], "20260415_12");
        assert!(kept_ids.contains(&"20260331_12".to_string()));
        assert!(kept_ids.contains(&"20250531_12".to_string()));
        assert!(!kept_ids.contains(&"20250430_12".to_string()));
    }

    #[test]
    fn max_size_keeps_the_newest_that_fit_next_to_what_stays() {
        let mut candidates = runs(&daily(at(2026, 1, 1, 0), 6));
        // The oldest is protected: its 10 bytes always count.
        candidates[0].protected = true;
        let policy = Policy {
            max_size: Some(35),
            ..Default::default()
        };
        let verdicts = apply(&policy, &candidates, at(2026, 2, 1, 0));
        let fits: Vec<bool> = verdicts.iter().map(Verdict::keeps).collect();
        // 10 (protected) + the two newest (20) fit; the third newest would make 40.
        assert_eq!(fits, vec![false, false, false, false, true, true]);
        assert!(!verdicts[0].over_max_size, "protected runs are never over");
        assert!(verdicts[1].over_max_size && verdicts[3].over_max_size);

        // Combined: --keep 1 keeps the newest whatever the size, and counts.
        let policy = Policy {
            keep_last: 1,
            max_size: Some(25),
            ..Default::default()
        };
        let verdicts = apply(&policy, &candidates, at(2026, 2, 1, 0));
        let fits: Vec<bool> = verdicts.iter().map(Verdict::keeps).collect();
        assert_eq!(fits, vec![false, false, false, false, false, true]);
        assert!(verdicts[4].over_max_size);
    }

    #[test]
    fn same_instant_runs_are_ordered_by_id() {
        let t = at(2026, 1, 1, 0);
        let candidates = vec![
            Candidate {
                created_at: t,
                id: "20260101_000000_001".into(),
                size_bytes: 1,
                protected: false,
            },
            Candidate {
                created_at: t,
                id: "20260101_000000".into(),
                size_bytes: 1,
                protected: false,
            },
        ];
        let verdicts = apply(
            &Policy {
                keep_last: 1,
                ..Default::default()
            },
            &candidates,
            t,
        );
        assert!(verdicts[0].keeps() && !verdicts[1].keeps());
    }

    #[test]
    fn durations() {
        let ok = [
            ("7d", Duration::days(7)),
            ("12h", Duration::hours(12)),
            ("2w", Duration::weeks(2)),
            ("90s", Duration::seconds(90)),
            ("1d12h", Duration::hours(36)),
            ("1W", Duration::weeks(1)),
        ];
        for (text, want) in ok {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
            assert_eq!(parse_duration(&format_duration(want)), Ok(want));
        }
        for bad in ["", "7", "d", "7x", "-1d", "1.5d", "99999999999999999w"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be refused");
        }
        assert_eq!(format_duration(Duration::hours(36)), "1d12h");
    }

    #[test]
    fn sizes() {
        let ok = [
            ("50GB", 50_000_000_000),
            ("1.5GiB", 1_610_612_736),
            ("500M", 524_288_000),
            ("1024", 1024),
            ("10 kb", 10_000),
            ("2TiB", 2 << 40),
            ("0", 0),
        ];
        for (text, want) in ok {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
        for bad in ["", "GB", "5 parsecs", "-1GB", "1e3"] {
            assert!(parse_size(bad).is_err(), "{bad} should be refused");
        }
        assert_eq!(format_size(1_610_612_736), "1.5GiB");
        assert_eq!(parse_size(&format_size(2 << 40)), Ok(2 << 40));
    }

    #[test]
    fn an_empty_policy_is_recognised_and_described() {
        assert!(Policy::default().is_empty());
        let p = Policy {
            keep_last: 5,
            keep_within: Some(Duration::days(7)),
            ..Default::default()
        };
        assert!(!p.is_empty());
        assert_eq!(p.describe(), "--keep 5 --keep-within 7d");
    }
}
