//! Where the PostgreSQL server binaries and TimescaleDB are installed, and the `postgres` user
//! a root test process runs the server as.

use std::path::{Path, PathBuf};

use super::{PgError, io_err};

pub(super) const INSTALL_HINT: &str = "install PostgreSQL with `apt-get update && apt-get install -y postgresql` \
     (or point EMS_PG_BIN at a directory holding initdb and postgres)";

/// `Ok` when the TimescaleDB extension is installed into the PostgreSQL whose binaries the tests
/// use (its loader library and its control file); `Err` says what is missing.
pub fn timescaledb_status() -> Result<(), String> {
    let bin = find_binaries().map_err(|e| e.to_string())?;
    let lib = bin.join("../lib/timescaledb.so");
    if !lib.is_file() {
        return Err(format!("{} not found", lib.display()));
    }
    let version = bin
        .parent()
        .and_then(|p| p.file_name())
        .and_then(|v| v.to_str())
        .unwrap_or_default()
        .to_string();
    let control = PathBuf::from(format!(
        "/usr/share/postgresql/{version}/extension/timescaledb.control"
    ));
    if !control.is_file() {
        return Err(format!("{} not found", control.display()));
    }
    Ok(())
}

pub(super) fn find_binaries() -> Result<PathBuf, PgError> {
    let has_both = |p: &Path| p.join("initdb").is_file() && p.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("EMS_PG_BIN") {
        let dir = PathBuf::from(dir);
        if has_both(&dir) {
            return Ok(dir);
        }
        return Err(PgError::NotInstalled {
            searched: format!("EMS_PG_BIN={}", dir.display()),
        });
    }
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_both(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .ok_or_else(|| PgError::NotInstalled {
            searched: "/usr/lib/postgresql/*/bin".into(),
        })
}

pub(super) fn postgres_user_if_root() -> Result<Option<(u32, u32)>, PgError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    let name = c"postgres";
    // SAFETY: getpwnam returns a pointer into static storage or null; we copy the ids out at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(PgError::Failed {
            step: "finding the postgres user",
            detail: format!(
                "running as root, and PostgreSQL refuses root, but there is no `postgres` user; {INSTALL_HINT}"
            ),
        });
    }
    // SAFETY: pw is non-null and points to a valid passwd record.
    let (uid, gid) = unsafe { ((*pw).pw_uid, (*pw).pw_gid) };
    Ok(Some((uid, gid)))
}

pub(super) fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), PgError> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(io_err("chown for postgres"))
}
