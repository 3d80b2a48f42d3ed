//! Writing emsctl's config file, for `login` and `logout`: the file's keys are read as they are,
//! the ones being changed replaced, and the result written atomically with mode 0600 (a new
//! directory gets 0700), so the token is never readable by others, not even for a moment, and a
//! crash leaves either the old file or the new one.
//!
//! Deciding ([`render`]) is separate from doing ([`write_private`]).

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::exit::Failure;
use crate::settings::FileKeys;

/// The file's text for `keys`, in the order the README documents them.
pub fn render(keys: &FileKeys) -> String {
    let mut out = String::from("# emsctl settings (emsctl login / logout rewrite this file)\n");
    let entries = [
        ("url", keys.url.clone()),
        ("token", keys.token.clone()),
        ("device", keys.device.clone()),
        (
            "ca_file",
            keys.ca_file.as_ref().map(|p| p.display().to_string()),
        ),
    ];
    for (key, value) in entries {
        if let Some(v) = value {
            out.push_str(&format!("{key} = {}\n", toml_string(&v)));
        }
    }
    out
}

/// A TOML basic string: quotes, backslashes and control characters escaped.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The file to write for `path`: a symlinked config stays a symlink (its target is rewritten).
pub fn real_target(path: &Path) -> PathBuf {
    match std::fs::read_link(path) {
        Ok(target) if target.is_absolute() => target,
        Ok(target) => path.parent().unwrap_or(Path::new(".")).join(target),
        Err(_) => path.to_path_buf(),
    }
}

/// Writes `text` to `path` atomically: a 0600 temporary file in the same directory, synced,
/// then renamed over `path`. A missing directory is created with mode 0700.
pub fn write_private(path: &Path, text: &str) -> Result<(), Failure> {
    let fail = |what: &str, e: std::io::Error| {
        Failure::new(
            crate::exit::Exit::Failed,
            format!("cannot {what} {}: {e}", path.display()),
        )
        .hint("nothing was changed; check the directory's permissions, or choose another file with --config")
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .map_err(|e| fail("create the directory of", e))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.toml".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        // The rename itself survives a crash once the directory is synced.
        std::fs::File::open(&dir)?.sync_all()
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail("write", e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn strings_are_escaped_and_read_back() {
        let keys = FileKeys {
            url: Some("http://h:1".into()),
            token: Some("emsa_x\"y\\z".into()),
            device: None,
            ca_file: Some("/etc/ca.pem".into()),
        };
        let text = render(&keys);
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("c.toml");
        std::fs::write(&path, &text).unwrap();
        let back = crate::settings::read_file(&path).unwrap();
        assert_eq!(back, keys, "{text}");
    }

    #[test]
    fn written_private_and_atomically() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("new").join("config.toml");
        write_private(&path, "url = \"a\"\n").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        // Replacing a file that others could read leaves a private one.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, "url = \"b\"\n").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "url = \"b\"\n");
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }
}
