//! Where dev material lives, and keeping it private.
//!
//! Dev material — private keys for the server and the clients, the dev issuer's signing key, a
//! token — goes to a per-user directory ([`default_dev_dir`]): `$XDG_RUNTIME_DIR/certbound-dev`
//! if that is set, else `$XDG_CACHE_HOME/certbound-dev`, else `$HOME/.cache/certbound-dev`. Never
//! a fixed name in a shared `/tmp`, where anyone could create it first and read or swap the keys.
//!
//! [`private_dir`] creates the directory with mode 0700 and refuses to reuse one that is owned
//! by another user or writable by group or others; [`write_private`] writes a private key with
//! mode 0600. [`DevPki::load_or_create`](crate::DevPki::load_or_create) does both, so the example
//! API and `certbound dev-pki` share the rules.
//!
//! ```
//! # #[cfg(unix)] {
//! use std::os::unix::fs::PermissionsExt as _;
//!
//! let dir = std::env::temp_dir().join(format!("certbound-dev-doc-{}", std::process::id()));
//! certbound_dev::private_dir(&dir).unwrap();
//! let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
//! assert_eq!(mode & 0o777, 0o700);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # }
//! ```

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::DevError;

/// The name of the dev directory inside the per-user base directory.
pub const DEV_DIR_NAME: &str = "certbound-dev";

/// The per-user dev directory: `$XDG_RUNTIME_DIR/certbound-dev`, else
/// `$XDG_CACHE_HOME/certbound-dev`, else `$HOME/.cache/certbound-dev`. Relative or empty values
/// are ignored, as the XDG base directory specification says. Nothing is created.
pub fn default_dev_dir() -> Result<PathBuf, DevError> {
    dev_dir_from(|name| std::env::var_os(name)).ok_or(DevError::NoUserDir)
}

/// [`default_dev_dir`] with the environment given as a function (for tests and for callers that
/// keep their own environment).
pub fn dev_dir_from(var: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let absolute = |name: &str| {
        var(name)
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
    };
    if let Some(runtime) = absolute("XDG_RUNTIME_DIR") {
        return Some(runtime.join(DEV_DIR_NAME));
    }
    if let Some(cache) = absolute("XDG_CACHE_HOME") {
        return Some(cache.join(DEV_DIR_NAME));
    }
    absolute("HOME").map(|home| home.join(".cache").join(DEV_DIR_NAME))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DevError {
    let path = path.to_owned();
    move |source| DevError::Io { path, source }
}

/// Creates `dir` (and its parents) if missing — `dir` itself with mode 0700 — and checks that it
/// is fit for private keys: a directory owned by this user (the effective uid) and not writable by
/// group or others. A directory that is not is refused with [`DevError::UnsafeDir`], which says
/// what is wrong and what to do; it is never "fixed" silently, since someone else may already
/// have put files in it. If `dir` is a symbolic link, the link must be this user's too.
///
/// Outside Unix there are no such permission bits; the directory is only created.
pub fn private_dir(dir: &Path) -> Result<(), DevError> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(dir)(e)),
    }
    #[cfg(unix)]
    check_private_dir(dir, rustix::process::geteuid().as_raw())?;
    #[cfg(not(unix))]
    if !dir.is_dir() {
        return Err(unsafe_dir(dir, "it is not a directory", "remove it"));
    }
    Ok(())
}

fn unsafe_dir(dir: &Path, problem: impl Into<String>, fix: impl Into<String>) -> DevError {
    DevError::UnsafeDir {
        path: dir.to_owned(),
        problem: problem.into(),
        fix: fix.into(),
    }
}

/// The checks of [`private_dir`] for an existing `dir`, as user `me`.
#[cfg(unix)]
pub fn check_private_dir(dir: &Path, me: u32) -> Result<(), DevError> {
    use std::os::unix::fs::MetadataExt as _;

    let link = std::fs::symlink_metadata(dir).map_err(io(dir))?;
    if link.file_type().is_symlink() && link.uid() != me {
        return Err(unsafe_dir(
            dir,
            format!(
                "it is a symbolic link owned by uid {}, not by this user (uid {me})",
                link.uid()
            ),
            "remove it",
        ));
    }
    let meta = std::fs::metadata(dir).map_err(io(dir))?;
    if !meta.is_dir() {
        return Err(unsafe_dir(dir, "it is not a directory", "remove it"));
    }
    if meta.uid() != me {
        return Err(unsafe_dir(
            dir,
            format!(
                "it is owned by uid {}, not by this user (uid {me})",
                meta.uid()
            ),
            "remove it",
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(unsafe_dir(
            dir,
            format!("it is writable by group or others (mode {mode:04o})"),
            format!("run `chmod 700 {}`", dir.display()),
        ));
    }
    Ok(())
}

/// Writes a private key (or anything secret) to `path` with mode 0600 — also when the file
/// exists with a wider mode, which is narrowed before anything is written.
pub fn write_private(path: &Path, contents: impl AsRef<[u8]>) -> Result<(), DevError> {
    use std::io::Write as _;

    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(io(path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(io(path))?;
    }
    file.write_all(contents.as_ref()).map_err(io(path))
}

/// Narrows an existing private file to mode 0600 if group or others can read or write it (dev
/// material written before these rules, in a directory [`private_dir`] has accepted).
#[cfg(unix)]
pub fn narrow_private(path: &Path) -> Result<(), DevError> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    let meta = std::fs::metadata(path).map_err(io(path))?;
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io(path))?;
    }
    Ok(())
}

/// Nothing to narrow outside Unix.
#[cfg(not(unix))]
pub fn narrow_private(_path: &Path) -> Result<(), DevError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn dir_with(vars: &[(&str, &str)]) -> Option<PathBuf> {
        let vars: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), OsString::from(v)))
            .collect();
        dev_dir_from(|name| vars.get(name).cloned())
    }

    #[test]
    fn per_user_locations_in_order() {
        let all = [
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
            ("XDG_CACHE_HOME", "/home/me/.xdg-cache"),
            ("HOME", "/home/me"),
        ];
        assert_eq!(
            dir_with(&all),
            Some(PathBuf::from("/run/user/1000/certbound-dev"))
        );
        assert_eq!(
            dir_with(&all[1..]),
            Some(PathBuf::from("/home/me/.xdg-cache/certbound-dev"))
        );
        assert_eq!(
            dir_with(&all[2..]),
            Some(PathBuf::from("/home/me/.cache/certbound-dev"))
        );
        assert_eq!(dir_with(&[]), None);
    }

    #[test]
    fn relative_and_empty_values_are_ignored() {
        assert_eq!(
            dir_with(&[
                ("XDG_RUNTIME_DIR", ""),
                ("XDG_CACHE_HOME", "relative/cache"),
                ("HOME", "/home/me"),
            ]),
            Some(PathBuf::from("/home/me/.cache/certbound-dev"))
        );
        assert_eq!(dir_with(&[("HOME", "")]), None);
    }
}
