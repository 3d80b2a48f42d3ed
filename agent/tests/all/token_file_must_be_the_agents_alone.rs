//! The device token file is refused unless the agent's user owns it and nobody else may access
//! it (mode & 0o077 == 0): the error names the file and the fix. Real files, real chmod/chown.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ems_agent::uplink::connect::read_token;

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn group_or_other_access_is_refused_naming_the_file_and_chmod() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("device.token");
    std::fs::write(&path, "emsd_secret\n").unwrap();
    for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o610] {
        chmod(&path, mode);
        let err = read_token(&path).unwrap_err().to_string();
        assert!(
            err.contains(&path.display().to_string())
                && err.contains(&format!("mode {mode:03o}"))
                && err.contains(&format!("chmod 600 {}", path.display())),
            "{mode:o}: {err}"
        );
    }
    for mode in [0o600, 0o400] {
        chmod(&path, mode);
        assert_eq!(read_token(&path).unwrap(), "emsd_secret", "{mode:o}");
    }
}

#[test]
fn a_file_another_user_owns_is_refused_naming_chown() {
    let dir = tempfile::tempdir().unwrap();
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let path = if euid == 0 {
        // As root: give a 600 file to nobody (65534).
        let path = dir.path().join("device.token");
        std::fs::write(&path, "emsd_secret\n").unwrap();
        chmod(&path, 0o600);
        std::os::unix::fs::chown(&path, Some(65_534), Some(65_534)).unwrap();
        path
    } else {
        // As any other user: a file root owns, that everybody may read.
        Path::new("/etc/passwd").to_path_buf()
    };
    let err = read_token(&path).unwrap_err().to_string();
    assert!(
        err.contains(&path.display().to_string())
            && err.contains(&format!("the agent runs as uid {euid}"))
            && err.contains(&format!("chown {euid} {}", path.display())),
        "{err}"
    );
}
