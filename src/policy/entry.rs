//! What a directory entry is, as the pure rules see it. The walker in
//! `fsx` fills it in; `clear_rules` decides by it.

/// What a directory entry is, judged without following symlinks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
    /// Fifos, sockets and devices: removed like files, never opened.
    Other,
}
