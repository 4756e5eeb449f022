//! Release versions: semver 2.0 parsing and precedence, and the order of
//! production releases whatever their names (pure).

use std::cmp::Ordering;
use std::fmt;

use crate::error::ArtifactError;

/// A semantic version `X.Y.Z[-pre.release]` (build metadata is not
/// accepted: two releases differing only in it would sort as equal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pub pre: Vec<String>,
}

impl Version {
    pub fn parse(text: &str) -> Result<Version, ArtifactError> {
        let bad = |why: &str| {
            ArtifactError::usage(format!(
                "bad version '{text}': {why}; use semantic versioning X.Y.Z, e.g. 1.2.0 or 2.0.0-rc.1"
            ))
        };
        let (core, pre) = match text.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (text, None),
        };
        let numbers: Vec<&str> = core.split('.').collect();
        if numbers.len() != 3 {
            return Err(bad("expected three numbers separated by dots"));
        }
        let mut parsed = [0u64; 3];
        for (slot, n) in parsed.iter_mut().zip(&numbers) {
            if n.is_empty()
                || !n.chars().all(|c| c.is_ascii_digit())
                || (n.len() > 1 && n.starts_with('0'))
            {
                return Err(bad(&format!("'{n}' is not a number without leading zeros")));
            }
            *slot = n.parse().map_err(|_| bad(&format!("'{n}' is too large")))?;
        }
        let pre = match pre {
            None => Vec::new(),
            Some(p) => {
                let ids: Vec<String> = p.split('.').map(str::to_string).collect();
                if ids.iter().any(|i| {
                    i.is_empty() || !i.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                }) {
                    return Err(bad(
                        "the pre-release part takes dot-separated letters, digits and '-'",
                    ));
                }
                ids
            }
        };
        Ok(Version {
            major: parsed[0],
            minor: parsed[1],
            patch: parsed[2],
            pre,
        })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        if !self.pre.is_empty() {
            write!(f, "-{}", self.pre.join("."))?;
        }
        Ok(())
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => compare_pre(&self.pre, &other.pre),
            })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Semver precedence of pre-release parts: numbers compare numerically and
/// sort before words; a shorter list sorts first when one is a prefix.
pub(crate) fn compare_pre(a: &[String], b: &[String]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            (Ok(_), Err(_)) => Ordering::Less,
            (Err(_), Ok(_)) => Ordering::Greater,
            (Err(_), Err(_)) => x.cmp(y),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    a.len().cmp(&b.len())
}

/// Where a production release sorts. Releases artifactctl wrote are named by
/// their semantic version; a production folder with any other name (seed
/// 004's `v5_5_prod_v1.0`) is a legacy release: it sorts before every
/// semantic version (it predates them), and among legacy releases by the last
/// version-like number group in its name (`1.0`), then by name. `list`,
/// `promote` and `rollback` all order releases by this key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum ReleaseKey {
    Legacy(Vec<u64>, String),
    Semver(Version),
}

impl ReleaseKey {
    pub fn of(id: &str) -> ReleaseKey {
        if let Ok(v) = Version::parse(id) {
            return ReleaseKey::Semver(v);
        }
        let last_group = id
            .rsplit(|c: char| !(c.is_ascii_digit() || c == '.'))
            .find(|g| g.chars().any(|c| c.is_ascii_digit()))
            .unwrap_or("");
        let numbers = last_group
            .split('.')
            .filter_map(|n| n.parse::<u64>().ok())
            .collect();
        ReleaseKey::Legacy(numbers, id.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_and_order_like_semver() {
        let v = |s: &str| Version::parse(s).unwrap();
        assert_eq!(v("1.2.3").to_string(), "1.2.3");
        let mut list = [
            v("1.10.0"),
            v("1.2.0"),
            v("1.0.0"),
            v("1.0.0-rc.1"),
            v("1.0.0-alpha"),
            v("1.0.0-rc.10"),
            v("1.0.0-rc.2"),
        ];
        list.sort();
        let text: Vec<String> = list.iter().map(Version::to_string).collect();
        assert_eq!(
            text,
            [
                "1.0.0-alpha",
                "1.0.0-rc.1",
                "1.0.0-rc.2",
                "1.0.0-rc.10",
                "1.0.0",
                "1.2.0",
                "1.10.0"
            ]
        );
        for bad in [
            "1.0",
            "v1.0.0",
            "1.0.0.0",
            "01.0.0",
            "1.a.0",
            "1.0.0-",
            "1.0.0+build",
            "",
        ] {
            assert!(Version::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn legacy_release_names_sort_before_semantic_versions() {
        let mut ids = vec![
            "1.0.0",
            "v5_5_prod_v1.10",
            "0.1.0",
            "v5_5_prod_v1.0",
            "v5_5_prod_v1.2",
        ];
        ids.sort_by_key(|id| ReleaseKey::of(id));
        assert_eq!(
            ids,
            [
                "v5_5_prod_v1.0",
                "v5_5_prod_v1.2",
                "v5_5_prod_v1.10",
                "0.1.0",
                "1.0.0"
            ]
        );
    }
}
