//! Reading a listing: which folders the index vouches for, the rows of
//! each folder, and the debug comparison with a full scan.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use super::{Group, Listing, Row, RunChecks, RUN_CHECKS_UP_TO};
use crate::store::discover::Scan;
use crate::store::index::{self, DirStamp, EntryIn, Header, Stamp};
use crate::store::layout::{INDEX_DIR, INTERNAL_DIR};
use crate::store::metadata;
use crate::store::model::*;
use crate::store::read::read_run;
use crate::store::refs::{self, Namespace, Stage};
use crate::store::Store;

/// One folder to list, as the first pass found it.
struct Folder {
    group: u32,
    header: Option<Header>,
    /// The folder's listing when its index file does not vouch for it.
    scan: Option<Scan>,
    /// Child folders the index file took for namespaces that are runs now.
    extra_runs: Vec<String>,
}

/// Everything at or below `under` in `stages`.
pub fn list(
    store: &Store,
    stages: &[Stage],
    under: &Namespace,
    opts: &ReadOptions,
    checks: RunChecks,
) -> Listing {
    list_at(
        store,
        stages,
        under,
        refs::MAX_NAMESPACE_DEPTH,
        opts,
        checks,
    )
}

/// The runs directly in one namespace (not below it).
pub fn list_in(
    store: &Store,
    stage: Stage,
    ns: &Namespace,
    opts: &ReadOptions,
    checks: RunChecks,
) -> Listing {
    list_at(store, &[stage], ns, 0, opts, checks)
}

fn list_at(
    store: &Store,
    stages: &[Stage],
    under: &Namespace,
    depth: usize,
    opts: &ReadOptions,
    checks: RunChecks,
) -> Listing {
    let mode = index::mode();
    let mut listing = Listing::default();
    let mut folders = Vec::new();
    for &stage in stages {
        let Ok(dir) = store.ns_dir(stage, under) else {
            continue;
        };
        visit(
            store,
            stage,
            under.clone(),
            dir,
            false,
            depth,
            mode,
            &mut listing.groups,
            &mut folders,
        );
    }
    let indexed: usize = folders
        .iter()
        .filter_map(|f| f.header.as_ref())
        .map(|h| h.entries)
        .sum();
    let check_runs = checks == RunChecks::Always || indexed <= run_checks_up_to();
    for folder in folders {
        read_folder(store, &mut listing, folder, opts, check_runs);
    }
    listing.sort_as_discovered();
    listing.mark_latest();
    if mode == index::Mode::Check {
        let locations = if depth == 0 {
            stages
                .iter()
                .flat_map(|&stage| store.locations_in(stage, under))
                .collect()
        } else {
            store.locations(stages, under)
        };
        compare_with_scan(store, locations, opts, &listing, check_runs);
    }
    listing
}

fn run_checks_up_to() -> usize {
    // Tests lower it to see what a large store's listing does.
    if cfg!(debug_assertions) {
        if let Some(n) = std::env::var("ARTIFACTCTL_INDEX_RUN_CHECKS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            return n;
        }
    }
    RUN_CHECKS_UP_TO
}

/// Find the folders to list at and below `dir`. A child namespace folder
/// (`check_run`) that its index file does not vouch for is classified
/// again: `false` when it turned out to be a run of its parent (a file
/// dropped into it changes its own stamp, not its parent's).
#[allow(clippy::too_many_arguments)]
fn visit(
    store: &Store,
    stage: Stage,
    ns: Namespace,
    dir: PathBuf,
    check_run: bool,
    depth: usize,
    mode: index::Mode,
    groups: &mut Vec<Group>,
    folders: &mut Vec<Folder>,
) -> bool {
    let Some(stamp) = DirStamp::of(&dir) else {
        return true;
    };
    let header = if mode == index::Mode::Off {
        None
    } else {
        read_header(store.dir(), stage, &ns)
    };
    // The index file vouches for the folder's entries when its stamp holds.
    let trusted = header.as_ref().is_some_and(|h| h.trusted && h.dir == stamp);
    let name = ns.segments().last().cloned().unwrap_or_default();
    if !trusted && check_run && crate::store::discover::is_run_dir(&dir, &name) {
        return false;
    }
    let scan = if trusted {
        None
    } else {
        match store.scan(stage, &ns, &dir) {
            Some(scan) => Some(scan),
            None => return true,
        }
    };
    let children: Vec<String> = match (&scan, &header) {
        (Some(scan), _) => scan.namespaces.clone(),
        (None, Some(h)) => h.namespaces.clone(),
        (None, None) => Vec::new(),
    };
    // A fresh scan just classified the children; an index file's list of
    // them is checked child by child.
    let mut extra_runs = Vec::new();
    for child in children {
        let child_dir = dir.join(&child);
        let is_namespace = if depth == 0 {
            !trusted || !crate::store::discover::is_run_dir(&child_dir, &child)
        } else {
            visit(
                store,
                stage,
                ns.child(&child),
                child_dir,
                trusted,
                depth - 1,
                mode,
                groups,
                folders,
            )
        };
        if !is_namespace {
            extra_runs.push(child);
        }
    }
    let has_runs = !extra_runs.is_empty()
        || match &scan {
            Some(scan) => !scan.runs.is_empty(),
            None => header
                .as_ref()
                .is_some_and(|h| h.entries > 0 || !h.unindexed.is_empty()),
        };
    if has_runs {
        let group = groups.len() as u32;
        groups.push(Group {
            stage,
            ns_text: ns.to_string(),
            namespace: ns,
            dir,
        });
        folders.push(Folder {
            group,
            header,
            scan,
            extra_runs,
        });
    }
    true
}

/// The header of an index file, read without its body.
fn read_header(store_dir: &Path, stage: Stage, ns: &Namespace) -> Option<Header> {
    let internal = store_dir.join(INTERNAL_DIR);
    let real = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.is_dir());
    if !real(&internal) || !real(&internal.join(INDEX_DIR)) {
        return None;
    }
    let file = metadata::open_regular(&index::file_path(store_dir, stage, ns), false).ok()?;
    let mut reader = std::io::BufReader::with_capacity(1 << 16, file);
    let mut line = Vec::new();
    std::io::BufRead::read_until(&mut reader, b'\n', &mut line).ok()?;
    parse_header(&line, stage, ns)
}

fn parse_header(line: &[u8], stage: Stage, ns: &Namespace) -> Option<Header> {
    let header: Header = serde_json::from_slice(line).ok()?;
    (header.version == index::INDEX_VERSION
        && header.stage == stage
        && header.namespace == ns.to_string())
    .then_some(header)
}

/// The rows of one folder: its index entries that still hold, and every
/// other run read from disk.
fn read_folder(
    store: &Store,
    listing: &mut Listing,
    folder: Folder,
    opts: &ReadOptions,
    check_runs: bool,
) {
    let group = folder.group;
    let g = listing.groups[group as usize].clone();
    // Which runs the folder holds, when its index file does not say.
    let wanted: Option<HashMap<&str, u64>> = folder
        .scan
        .as_ref()
        .map(|s| s.runs.iter().map(|(id, ino)| (id.as_str(), *ino)).collect());
    let mut rows = Vec::with_capacity(folder.header.as_ref().map_or(0, |h| h.entries));
    let mut stale: Vec<String> = Vec::new();
    let mut done: Vec<String> = Vec::new();
    let dir_fd = if check_runs {
        Stamp::open_dir(&g.dir)
    } else {
        None
    };
    let read_whole = folder.header.as_ref().is_some_and(|header| {
        stream_entries(store.dir(), &g, header, |lines| {
            let got: Vec<Result<Row, String>> = lines
                .par_iter()
                .filter_map(|line| {
                    let Some(e) = EntryIn::parse(line) else {
                        return Some(Err(String::new()));
                    };
                    if let Some(w) = &wanted {
                        if w.get(e.id.as_ref()) != Some(&e.dino) {
                            return None;
                        }
                    }
                    if check_runs
                        && dir_fd.as_ref().and_then(|d| Stamp::current_in(d, &e.id))
                            != Some(e.stamp)
                    {
                        return Some(Err(e.id.into_owned()));
                    }
                    Some(Ok(Row::from_entry(group, &e, opts)))
                })
                .collect();
            for r in got {
                match r {
                    Ok(row) => rows.push(row),
                    Err(id) if id.is_empty() => return false,
                    Err(id) => stale.push(id),
                }
            }
            true
        })
    });
    // Rows come in id order; entries must be strictly sorted.
    let read_whole = read_whole && rows.windows(2).all(|w| w[0].id() < w[1].id());
    if !read_whole {
        rows.clear();
        stale.clear();
    }
    done.extend(rows.iter().map(|r| r.id().to_string()));
    let all: Vec<String> = match (&folder.scan, &folder.header) {
        (Some(scan), _) => scan.runs.iter().map(|(id, _)| id.clone()).collect(),
        (None, Some(h)) if read_whole => {
            let mut ids: Vec<String> = stale;
            ids.extend(h.unindexed.iter().cloned());
            ids.extend(folder.extra_runs.iter().cloned());
            ids
        }
        // The index file vouched for the folder but could not be read
        // after all: list it.
        (None, _) => store
            .scan(g.stage, &g.namespace, &g.dir)
            .map(|s| s.runs.into_iter().map(|(id, _)| id).collect())
            .unwrap_or_default(),
    };
    done.sort();
    let rest: Vec<RunLocation> = all
        .into_iter()
        .filter(|id| done.binary_search(id).is_err())
        .map(|id| RunLocation {
            stage: g.stage,
            namespace: g.namespace.clone(),
            path: g.dir.join(&id),
            id,
        })
        .collect();
    let read: Vec<Row> = rest
        .into_par_iter()
        .map(|loc| Row::from_info(group, &read_run(loc, opts)))
        .collect();
    if !read.is_empty() {
        // Discovery's order: by id within the folder.
        rows.extend(read);
        rows.sort_unstable_by(|a, b| a.id().cmp(b.id()));
    }
    if listing.rows.is_empty() {
        listing.rows = rows;
    } else {
        listing.rows.extend(rows);
    }
}

/// Feed the entry lines of `group`'s index file to `each`, a few megabytes
/// at a time; `false` when the file changed since its header was read, is
/// torn, or `each` refused a line.
fn stream_entries(
    store_dir: &Path,
    group: &Group,
    header: &Header,
    mut each: impl FnMut(&[&[u8]]) -> bool,
) -> bool {
    const CHUNK: usize = 4 << 20;
    let Ok(mut file) = metadata::open_regular(
        &index::file_path(store_dir, group.stage, &group.namespace),
        false,
    ) else {
        return false;
    };
    // One buffer, filled and drained in place: lines cut at its end move
    // to its front.
    let mut buf: Vec<u8> = vec![0; CHUNK];
    let mut filled = 0;
    let mut first = true;
    let mut count = 0usize;
    loop {
        if filled == buf.len() {
            // A line longer than the buffer.
            buf.resize(buf.len() * 2, 0);
        }
        let n = match file.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return false,
        };
        filled += n;
        let eof = n == 0;
        let Some(last_nl) = buf[..filled].iter().rposition(|&b| b == b'\n') else {
            if eof {
                // Bytes after the last newline, or no header line: torn.
                return filled == 0 && !first && count == header.entries;
            }
            continue;
        };
        let mut body = &buf[..=last_nl];
        if first {
            let head_end = body.iter().position(|&b| b == b'\n').unwrap_or(0);
            if parse_header(&body[..=head_end], group.stage, &group.namespace).as_ref()
                != Some(header)
            {
                return false;
            }
            body = &body[head_end + 1..];
            first = false;
        }
        let lines: Vec<&[u8]> = body
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        count += lines.len();
        if !each(&lines) {
            return false;
        }
        buf.copy_within(last_nl + 1..filled, 0);
        filled -= last_nl + 1;
        if eof {
            return filled == 0 && count == header.entries;
        }
    }
}

/// Debug builds under `ARTIFACTCTL_INDEX=check`: the listing must equal a
/// full scan (every run, and every row where runs were checked one by
/// one).
fn compare_with_scan(
    store: &Store,
    locations: Vec<RunLocation>,
    opts: &ReadOptions,
    listing: &Listing,
    check_runs: bool,
) {
    let mut scanned: Vec<RunInfo> = locations
        .into_par_iter()
        .map(|loc| read_run(loc, opts))
        .collect();
    crate::store::latest::mark_latest(store, &mut scanned);
    let ours: Vec<RunInfo> = listing.rows.iter().map(|r| listing.info(r)).collect();
    let refs = |runs: &[RunInfo]| runs.iter().map(|r| r.reference.clone()).collect::<Vec<_>>();
    assert_eq!(
        refs(&ours),
        refs(&scanned),
        "the run index lists other runs than the full scan"
    );
    if !check_runs {
        return;
    }
    let json = |r: &RunInfo| serde_json::to_value(r).unwrap_or_default();
    for (a, b) in ours.iter().zip(&scanned) {
        assert_eq!(
            json(a),
            json(b),
            "the run index disagrees with the full scan on {}",
            b.reference
        );
    }
}
