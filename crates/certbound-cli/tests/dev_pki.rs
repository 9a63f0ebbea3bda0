//! `certbound dev-pki DIR` writes the example's dev PKI, and a second run reuses it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{certbound, certbound_env, mode, openssl_x5t, TempDir};

const FILES: [&str; 9] = [
    "ca.pem",
    "server.pem",
    "server.key",
    "client-a.pem",
    "client-a.key",
    "client-b.pem",
    "client-b.key",
    "client-self-signed.pem",
    "client-self-signed.key",
];

#[test]
fn creates_then_reuses() {
    let tmp = TempDir::new("dev-pki");
    let dir = tmp.path().join("nested/pki");
    let first = certbound(["dev-pki".as_ref(), dir.as_os_str()]);
    println!("{}", first.stdout);
    assert_eq!(first.code, 0, "{first:?}");
    first.line_with(&["created a dev PKI in", &dir.display().to_string()]);
    for file in FILES {
        assert!(dir.join(file).is_file(), "{file} missing");
    }
    assert!(!dir.join("ca.key").exists(), "the CA key is never written");
    // Every listed thumbprint is what openssl computes for the written file.
    for name in ["ca", "server", "client-a", "client-b", "client-self-signed"] {
        let x5t = openssl_x5t(&dir.join(format!("{name}.pem")), false);
        first.line_with(&[&format!("x5t#S256 {x5t}")]);
    }
    let mtimes: Vec<_> = FILES
        .iter()
        .map(|f| std::fs::metadata(dir.join(f)).unwrap().modified().unwrap())
        .collect();
    let contents: Vec<_> = FILES
        .iter()
        .map(|f| std::fs::read(dir.join(f)).unwrap())
        .collect();

    let second = certbound(["dev-pki".as_ref(), dir.as_os_str()]);
    assert_eq!(second.code, 0, "{second:?}");
    second.line_with(&["reusing the dev PKI in", "nothing written"]);
    // Same listing apart from the first line; same files, untouched.
    assert_eq!(
        first.stdout.lines().skip(1).collect::<Vec<_>>(),
        second.stdout.lines().skip(1).collect::<Vec<_>>()
    );
    for (i, f) in FILES.iter().enumerate() {
        assert_eq!(std::fs::read(dir.join(f)).unwrap(), contents[i], "{f}");
        assert_eq!(
            std::fs::metadata(dir.join(f)).unwrap().modified().unwrap(),
            mtimes[i],
            "{f} rewritten"
        );
    }

    // --force makes a new set.
    let forced = certbound(["dev-pki".as_ref(), dir.as_os_str(), "--force".as_ref()]);
    assert_eq!(forced.code, 0, "{forced:?}");
    forced.line_with(&["created a dev PKI in"]);
    assert_ne!(
        std::fs::read(dir.join("client-a.pem")).unwrap(),
        contents[3]
    );
}

#[test]
fn the_example_reads_what_dev_pki_wrote() {
    // The same loader the example uses (DevPki::load_or_create) finds a complete set.
    let tmp = TempDir::new("dev-pki-load");
    assert_eq!(
        certbound(["dev-pki".as_ref(), tmp.path().as_os_str()]).code,
        0
    );
    let (pki, created) = certbound_dev::DevPki::load_or_create(tmp.path()).unwrap();
    assert!(!created);
    let a = std::fs::read_to_string(tmp.path().join("client-a.pem")).unwrap();
    assert_eq!(pki.client_a.cert_pem, a);
}

#[test]
fn unwritable_dir_is_one_line_and_exit_2() {
    let tmp = TempDir::new("dev-pki-bad");
    let file = tmp.write("not-a-dir", "x");
    let run = certbound(["dev-pki".as_ref(), file.join("sub").as_os_str()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(run.stderr.starts_with("error: dev PKI in "), "{run:?}");
}

/// Keys are the eight files besides `ca.pem` that end in `.key`.
fn keys(dir: &Path) -> impl Iterator<Item = std::path::PathBuf> + '_ {
    FILES
        .iter()
        .filter(|f| f.ends_with(".key"))
        .map(move |f| dir.join(f))
}

#[test]
fn the_directory_is_0700_and_keys_are_0600() {
    let tmp = TempDir::new("dev-pki-modes");
    let dir = tmp.path().join("pki");
    let run = certbound(["dev-pki".as_ref(), dir.as_os_str()]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(mode(&dir), 0o700);
    for key in keys(&dir) {
        assert_eq!(mode(&key), 0o600, "{}", key.display());
    }
    // --force rewrites the keys: still 0600.
    let run = certbound(["dev-pki".as_ref(), dir.as_os_str(), "--force".as_ref()]);
    assert_eq!(run.code, 0, "{run:?}");
    for key in keys(&dir) {
        assert_eq!(mode(&key), 0o600, "{}", key.display());
    }
}

#[test]
fn reusing_old_material_narrows_its_keys_to_0600() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = TempDir::new("dev-pki-narrow");
    let dir = tmp.path().join("pki");
    assert_eq!(certbound(["dev-pki".as_ref(), dir.as_os_str()]).code, 0);
    // As an older version left it: a 0755 directory, keys readable by everyone.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    for key in keys(&dir) {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let run = certbound(["dev-pki".as_ref(), dir.as_os_str()]);
    assert_eq!(run.code, 0, "{run:?}");
    run.line_with(&["reusing the dev PKI"]);
    for key in keys(&dir) {
        assert_eq!(mode(&key), 0o600, "{}", key.display());
    }
}

/// One line on stderr, exit 2, naming the directory and what to do — and nothing written.
fn assert_refused(dir: &Path, args: &[&str], problem: &str, fix: &str) {
    let mut all = vec!["dev-pki".to_owned(), dir.display().to_string()];
    all.extend(args.iter().map(|s| (*s).to_owned()));
    let run = certbound(&all);
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    let line = run.stderr.trim_end();
    let expected = format!(
        "error: refusing to use {} for dev material: {problem}; {fix}, or choose another directory",
        dir.display()
    );
    assert_eq!(line, expected, "{run:?}");
    assert!(!dir.join("client-a.key").exists(), "a key was written");
}

#[test]
fn a_directory_writable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = TempDir::new("dev-pki-0777");
    for bits in [0o777, 0o1777, 0o770, 0o702] {
        let dir = tmp.path().join(format!("pki-{bits:o}"));
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(bits)).unwrap();
        let fix = format!("run `chmod 700 {}`", dir.display());
        let problem = format!("it is writable by group or others (mode {bits:04o})");
        assert_refused(&dir, &[], &problem, &fix);
        assert_refused(&dir, &["--force"], &problem, &fix);
    }
}

/// Tests run as root here, so a directory can be given to another user (65534, `nobody`).
fn give_away(path: &Path, follow: bool) -> bool {
    let result = if follow {
        std::os::unix::fs::chown(path, Some(65534), None)
    } else {
        std::os::unix::fs::lchown(path, Some(65534), None)
    };
    match result {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => false,
        Err(e) => panic!("chown {}: {e}", path.display()),
    }
}

fn my_uid() -> u32 {
    use std::os::unix::fs::MetadataExt as _;
    // A file this process just made is owned by its effective uid.
    let tmp = TempDir::new("dev-pki-uid");
    std::fs::metadata(tmp.write("probe", "x")).unwrap().uid()
}

#[test]
fn a_directory_owned_by_another_user_is_refused() {
    let tmp = TempDir::new("dev-pki-owner");
    let dir = tmp.path().join("pki");
    std::fs::create_dir(&dir).unwrap();
    if !give_away(&dir, true) {
        // Not root: the same check, asked as if this process were another user.
        let err = certbound_dev::dir::check_private_dir(&dir, my_uid() + 1).unwrap_err();
        assert!(err.to_string().contains("not by this user"), "{err}");
        return;
    }
    let me = my_uid();
    let problem = format!("it is owned by uid 65534, not by this user (uid {me})");
    assert_refused(&dir, &[], &problem, "remove it");
    assert_refused(&dir, &["--force"], &problem, "remove it");
    // Also when it already holds a complete set (someone else's): never reused.
    std::os::unix::fs::chown(&dir, Some(me), None).unwrap();
    assert_eq!(certbound(["dev-pki".as_ref(), dir.as_os_str()]).code, 0);
    assert!(give_away(&dir, true));
    let run = certbound(["dev-pki".as_ref(), dir.as_os_str()]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(run.stderr.contains("owned by uid 65534"), "{run:?}");
}

#[test]
fn a_symlink_owned_by_another_user_is_refused() {
    let tmp = TempDir::new("dev-pki-link");
    let target = tmp.path().join("mine");
    std::fs::create_dir(&target).unwrap();
    let link = tmp.path().join("pki");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    // A link of this user's own to a private directory of its own is fine.
    std::os::unix::fs::lchown(&link, Some(my_uid()), None).unwrap();
    assert_eq!(certbound(["dev-pki".as_ref(), link.as_os_str()]).code, 0);
    std::fs::remove_file(target.join("client-a.key")).unwrap();
    if !give_away(&link, false) {
        return; // not root: cannot make a link owned by someone else
    }
    let problem = format!(
        "it is a symbolic link owned by uid 65534, not by this user (uid {})",
        my_uid()
    );
    assert_refused(&link, &[], &problem, "remove it");
}

#[test]
fn the_default_directory_is_per_user() {
    let tmp = TempDir::new("dev-pki-default");
    let run_dir = tmp.path().join("run");
    let cache = tmp.path().join("cache");
    let home = tmp.path().join("home");
    std::fs::create_dir(&run_dir).unwrap();
    let cases = [
        (
            [
                Some(run_dir.as_path()),
                Some(cache.as_path()),
                Some(home.as_path()),
            ],
            run_dir.join("certbound-dev"),
        ),
        (
            [None, Some(cache.as_path()), Some(home.as_path())],
            cache.join("certbound-dev"),
        ),
        (
            [None, None, Some(home.as_path())],
            home.join(".cache/certbound-dev"),
        ),
    ];
    for ([runtime, cache_home, home], expected) in cases {
        let run = certbound_env(
            ["dev-pki"],
            &[
                ("XDG_RUNTIME_DIR", runtime),
                ("XDG_CACHE_HOME", cache_home),
                ("HOME", home),
            ],
        );
        assert_eq!(run.code, 0, "{run:?}");
        run.line_with(&["created a dev PKI in", &expected.display().to_string()]);
        assert_eq!(mode(&expected), 0o700);
        assert_eq!(mode(&expected.join("client-a.key")), 0o600);
    }
    // Nowhere per-user to go: one line, exit 2.
    let run = certbound_env(
        ["dev-pki"],
        &[
            ("XDG_RUNTIME_DIR", None),
            ("XDG_CACHE_HOME", None),
            ("HOME", None),
        ],
    );
    assert_eq!(run.code, 2, "{run:?}");
    assert_eq!(run.stderr.lines().count(), 1, "{run:?}");
    assert!(run.stderr.contains("no per-user directory"), "{run:?}");
}
