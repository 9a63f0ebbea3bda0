//! certbound's task runner, run as `cargo xtask TASK` (the alias is in `.cargo/config.toml`).
//!
//! - `cargo xtask test [ARGS…]` — the README's test command. Installs the programs the test
//!   suites drive when they are missing (nginx, HAProxy, Redis, Caddy, curl, openssl — Debian
//!   packages, with `apt-get`), then runs `cargo test --workspace --all-features ARGS…` and exits
//!   with its status. `cargo xtask test --test behind_proxy -- --nocapture` passes the arguments
//!   through unchanged; with `-p CRATE` it tests that crate instead of the whole workspace.
//! - `cargo xtask install-deps [--dry-run]` — only the first half; `--dry-run` prints what is
//!   missing and the commands it would run, and changes nothing.
//!
//! Programs are looked for on `PATH` and in the usual sbin/bin directories;
//! `CERTBOUND_XTASK_PATH=DIR[:DIR…]` replaces that search (to try the "missing" path on a machine
//! that has everything, with `--dry-run`).
//!
//! Installing needs root: it runs `apt-get` directly as root, through `sudo` otherwise, and when
//! neither is possible it prints the exact command to run and exits non-zero. Nothing is
//! downloaded from outside the distribution's packages.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// A program the tests run, and the Debian package that provides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Program {
    /// The executable's file name.
    name: &'static str,
    /// The Debian package that installs it.
    package: &'static str,
}

/// Every program any test suite drives. The suites find the proxies by full path in the sbin/bin
/// directories (tests/common/process.rs `require_program`) and curl/openssl on `PATH`.
const PROGRAMS: &[Program] = &[
    // tests/behind_proxy.rs: real TLS-terminating proxies in front of the example.
    Program {
        name: "nginx",
        package: "nginx",
    },
    Program {
        name: "haproxy",
        package: "haproxy",
    },
    // The shared token cache and the Caddy proxy suites of the coming issues.
    Program {
        name: "redis-server",
        package: "redis-server",
    },
    Program {
        name: "caddy",
        package: "caddy",
    },
    // tests/example_walkthrough.rs runs the example's printed curl commands; the CLI tests
    // compare thumbprints with openssl's.
    Program {
        name: "curl",
        package: "curl",
    },
    Program {
        name: "openssl",
        package: "openssl",
    },
];

/// Directories searched besides `PATH`: the proxies live in sbin, which a non-root `PATH` often
/// lacks, and the tests look there.
const EXTRA_DIRS: &[&str] = &[
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// An environment variable that, when set, is the whole list of directories searched (a
/// `PATH`-style list) — for trying the install path on a machine that has every program.
const SEARCH_OVERRIDE: &str = "CERTBOUND_XTASK_PATH";

/// Why a task failed.
#[derive(Debug)]
enum XtaskError {
    /// The command line was not understood.
    Usage(String),
    /// Programs are missing and this process cannot install them; the text says how to.
    CannotInstall(String),
    /// A command could not be started.
    Spawn {
        command: String,
        error: std::io::Error,
    },
    /// A command ran and failed.
    Failed { command: String, status: String },
    /// Programs were still missing after installing their packages.
    StillMissing {
        /// The programs not found.
        names: Vec<&'static str>,
        /// The directories searched.
        searched: Vec<PathBuf>,
    },
}

impl fmt::Display for XtaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            XtaskError::Usage(what) => write!(f, "{what}\n\n{USAGE}"),
            XtaskError::CannotInstall(how) => f.write_str(how),
            XtaskError::Spawn { command, error } => write!(f, "could not run `{command}`: {error}"),
            XtaskError::Failed { command, status } => write!(f, "`{command}` failed ({status})"),
            XtaskError::StillMissing { names, searched } => {
                let searched: Vec<_> = searched.iter().map(|d| d.display().to_string()).collect();
                write!(
                    f,
                    "still not found after installing: {} (searched {})",
                    names.join(", "),
                    searched.join(", ")
                )
            }
        }
    }
}

const USAGE: &str = "usage:
  cargo xtask test [CARGO TEST ARGS…]     install what the tests need, then cargo test --workspace --all-features
  cargo xtask install-deps [--dry-run]    only install what the tests need (--dry-run: print, change nothing)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::from(if matches!(e, XtaskError::Usage(_)) {
                2
            } else {
                1
            })
        }
    }
}

fn run(args: &[String]) -> Result<ExitCode, XtaskError> {
    let (task, rest) = args
        .split_first()
        .ok_or_else(|| XtaskError::Usage("no task given".to_owned()))?;
    match task.as_str() {
        "test" => {
            install_missing(false)?;
            cargo_test(rest)
        }
        "install-deps" => {
            let dry_run = match rest {
                [] => false,
                [flag] if flag == "--dry-run" => true,
                _ => {
                    return Err(XtaskError::Usage(format!(
                        "unexpected arguments: {}",
                        rest.join(" ")
                    )))
                }
            };
            install_missing(dry_run)?;
            Ok(ExitCode::SUCCESS)
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(XtaskError::Usage(format!("unknown task `{other}`"))),
    }
}

/// `PATH`'s directories, then [`EXTRA_DIRS`] not already in it.
fn search_dirs(path_var: Option<OsString>) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = path_var
        .map(|p| {
            std::env::split_paths(&p)
                .filter(|d| !d.as_os_str().is_empty())
                .collect()
        })
        .unwrap_or_default();
    for extra in EXTRA_DIRS {
        let extra = PathBuf::from(extra);
        if !dirs.contains(&extra) {
            dirs.push(extra);
        }
    }
    dirs
}

/// Whether `path` is a file someone may execute.
fn is_executable(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.is_file() && meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        meta.is_file()
    }
}

/// Whether an executable called `name` is in one of `dirs`.
fn found(name: &str, dirs: &[PathBuf]) -> bool {
    dirs.iter().any(|d| is_executable(&d.join(name)))
}

/// The programs of `programs` that none of `dirs` holds, in the order given.
fn missing<'a>(programs: &'a [Program], dirs: &[PathBuf]) -> Vec<&'a Program> {
    programs.iter().filter(|p| !found(p.name, dirs)).collect()
}

/// The packages that provide `programs`, each once, sorted.
fn packages(programs: &[&Program]) -> Vec<&'static str> {
    programs
        .iter()
        .map(|p| p.package)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// How this process may run apt-get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Privilege {
    /// We are root: run apt-get directly.
    Root,
    /// Not root, but `sudo` is installed.
    Sudo,
    /// Neither: print what to install instead.
    Neither,
}

/// The commands that install `packages`: `apt-get update -qq` once, then one install.
fn install_plan(packages: &[&str], privilege: Privilege) -> Result<Vec<Vec<String>>, XtaskError> {
    let env = ["env", "DEBIAN_FRONTEND=noninteractive", "apt-get"];
    let update = ["update", "-qq"];
    let install = ["install", "-y", "-qq", "--no-install-recommends"];
    let step = |prefix: &[&str], args: &[&str], pkgs: &[&str]| -> Vec<String> {
        prefix
            .iter()
            .chain(env.iter())
            .chain(args.iter())
            .chain(pkgs.iter())
            .map(|s| (*s).to_owned())
            .collect()
    };
    let prefix: &[&str] = match privilege {
        Privilege::Root => &[],
        Privilege::Sudo => &["sudo"],
        Privilege::Neither => {
            return Err(XtaskError::CannotInstall(format!(
                "the tests need {list}, which are not installed, and installing them needs root \
                 (not root, no sudo). As root, run:\n\n  \
                 DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
                 DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends {list}\n\n\
                 then run `cargo xtask test` again.",
                list = packages.join(" ")
            )))
        }
    };
    Ok(vec![
        step(prefix, &update, &[]),
        step(prefix, &install, packages),
    ])
}

/// Root or not, from `id -u` (the standard library has no getuid).
fn privilege(dirs: &[PathBuf]) -> Privilege {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.status.success() && o.stdout.trim_ascii() == b"0")
        .unwrap_or(false);
    if root {
        Privilege::Root
    } else if found("sudo", dirs) {
        Privilege::Sudo
    } else {
        Privilege::Neither
    }
}

/// Installs the packages of every missing program (or, with `dry_run`, says what it would do).
fn install_missing(dry_run: bool) -> Result<(), XtaskError> {
    // CERTBOUND_XTASK_PATH replaces the search (PATH and the sbin/bin directories), so the
    // "missing" path can be tried on a machine that has everything:
    // `CERTBOUND_XTASK_PATH=/usr/bin cargo xtask install-deps --dry-run`.
    let dirs = match std::env::var_os(SEARCH_OVERRIDE) {
        Some(only) => std::env::split_paths(&only).collect(),
        None => search_dirs(std::env::var_os("PATH")),
    };
    let need = missing(PROGRAMS, &dirs);
    if need.is_empty() {
        let names: Vec<_> = PROGRAMS.iter().map(|p| p.name).collect();
        eprintln!("xtask: found {}", names.join(", "));
        return Ok(());
    }
    let names: Vec<_> = need.iter().map(|p| p.name).collect();
    let pkgs = packages(&need);
    eprintln!(
        "xtask: missing {} (Debian packages: {})",
        names.join(", "),
        pkgs.join(" ")
    );
    if !found("apt-get", &dirs) {
        return Err(XtaskError::CannotInstall(format!(
            "apt-get not found: install {} with this system's package manager, then run \
             `cargo xtask test` again",
            pkgs.join(" ")
        )));
    }
    let plan = install_plan(&pkgs, privilege(&dirs))?;
    for argv in &plan {
        let command = argv.join(" ");
        eprintln!(
            "xtask: {}{command}",
            if dry_run { "would run: " } else { "" }
        );
        if dry_run {
            continue;
        }
        let (program, args) = argv.split_first().ok_or_else(|| XtaskError::Failed {
            command: String::new(),
            status: "empty command".to_owned(),
        })?;
        let status =
            Command::new(program)
                .args(args)
                .status()
                .map_err(|error| XtaskError::Spawn {
                    command: command.clone(),
                    error,
                })?;
        if !status.success() {
            return Err(XtaskError::Failed {
                command,
                status: status.to_string(),
            });
        }
    }
    if !dry_run {
        let still: Vec<_> = missing(PROGRAMS, &dirs).iter().map(|p| p.name).collect();
        if !still.is_empty() {
            return Err(XtaskError::StillMissing {
                names: still,
                searched: dirs,
            });
        }
    }
    Ok(())
}

/// The workspace root (this crate's parent directory).
fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// The arguments of the test run: the whole workspace, every feature, then `extra` unchanged —
/// except that `-p`/`--package` in `extra` (before a `--`) replaces `--workspace`, which would
/// otherwise win and run everything.
fn cargo_test_args(extra: &[String]) -> Vec<String> {
    let names_packages = extra.iter().take_while(|a| *a != "--").any(|a| {
        a == "-p"
            || a == "--package"
            || a.starts_with("--package=")
            || (a.starts_with("-p") && a.len() > 2)
    });
    let scope = if names_packages {
        None
    } else {
        Some("--workspace")
    };
    std::iter::once("test")
        .chain(scope)
        .chain(std::iter::once("--all-features"))
        .map(str::to_owned)
        .chain(extra.iter().cloned())
        .collect()
}

/// Runs `cargo test --workspace --all-features EXTRA…` from the workspace root; its exit status
/// becomes ours.
fn cargo_test(extra: &[String]) -> Result<ExitCode, XtaskError> {
    // The cargo that runs us (`cargo xtask`) sets CARGO; use the same toolchain.
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let args = cargo_test_args(extra);
    let command = format!("cargo {}", args.join(" "));
    eprintln!("xtask: {command}");
    let status = Command::new(cargo)
        .args(&args)
        .current_dir(workspace_root())
        .status()
        .map_err(|error| XtaskError::Spawn { command, error })?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1).max(1)),
        // Killed by a signal.
        None => ExitCode::FAILURE,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A fresh, empty directory under the system temp dir.
    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("certbound-xtask-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn touch(dir: &Path, name: &str, mode: u32) {
        let p = dir.join(name);
        std::fs::write(&p, "#!/bin/sh\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }

    const TWO: &[Program] = &[
        Program {
            name: "nginx",
            package: "nginx",
        },
        Program {
            name: "redis-server",
            package: "redis-server",
        },
    ];

    #[test]
    fn a_program_in_any_searched_dir_is_found_and_the_rest_are_missing() {
        let a = scratch("found-a");
        let b = scratch("found-b");
        touch(&b, "nginx", 0o755);
        let need = missing(TWO, &[a.clone(), b.clone()]);
        assert_eq!(need, vec![&TWO[1]]);
        touch(&a, "redis-server", 0o755);
        assert!(missing(TWO, &[a.clone(), b.clone()]).is_empty());
        // Hiding the directory that holds nginx makes it missing again.
        assert_eq!(missing(TWO, std::slice::from_ref(&a)), vec![&TWO[0]]);
        std::fs::remove_dir_all(a).unwrap();
        std::fs::remove_dir_all(b).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_file_that_is_not_executable_or_a_directory_does_not_count() {
        let d = scratch("not-exec");
        touch(&d, "nginx", 0o644);
        std::fs::create_dir(d.join("redis-server")).unwrap();
        assert_eq!(
            missing(TWO, std::slice::from_ref(&d)),
            vec![&TWO[0], &TWO[1]]
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn an_empty_search_path_misses_every_program_and_installs_each_package_once() {
        let need = missing(PROGRAMS, &[]);
        assert_eq!(need.len(), PROGRAMS.len());
        assert_eq!(
            packages(&need),
            vec![
                "caddy",
                "curl",
                "haproxy",
                "nginx",
                "openssl",
                "redis-server"
            ]
        );
    }

    #[test]
    fn sbin_is_searched_even_when_path_lacks_it_and_path_comes_first() {
        let dirs = search_dirs(Some("/opt/tools:/usr/bin:".into()));
        assert_eq!(dirs[0], PathBuf::from("/opt/tools"));
        assert_eq!(dirs[1], PathBuf::from("/usr/bin"));
        assert!(dirs.contains(&PathBuf::from("/usr/sbin")));
        assert_eq!(
            dirs.iter().filter(|d| *d == Path::new("/usr/bin")).count(),
            1
        );
        assert!(!dirs.iter().any(|d| d.as_os_str().is_empty()));
        assert_eq!(search_dirs(None).len(), EXTRA_DIRS.len());
    }

    #[test]
    fn root_runs_apt_get_update_once_then_one_quiet_install() {
        let plan = install_plan(&["caddy", "nginx"], Privilege::Root).unwrap();
        let lines: Vec<String> = plan.iter().map(|argv| argv.join(" ")).collect();
        assert_eq!(
            lines,
            vec![
                "env DEBIAN_FRONTEND=noninteractive apt-get update -qq",
                "env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends caddy nginx",
            ]
        );
    }

    #[test]
    fn without_root_sudo_runs_the_same_commands() {
        let plan = install_plan(&["haproxy"], Privilege::Sudo).unwrap();
        assert!(plan.iter().all(|argv| argv[0] == "sudo"));
        assert_eq!(
            plan[1].join(" "),
            "sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy"
        );
    }

    #[test]
    fn without_root_or_sudo_the_error_prints_the_exact_command() {
        let err = install_plan(&["nginx", "redis-server"], Privilege::Neither).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, XtaskError::CannotInstall(_)));
        assert!(
            text.contains("apt-get install -y -qq --no-install-recommends nginx redis-server"),
            "{text}"
        );
    }

    #[test]
    fn extra_arguments_pass_through_after_the_workspace_flags() {
        let extra = ["--test", "behind_proxy", "--", "--nocapture"].map(String::from);
        assert_eq!(
            cargo_test_args(&extra).join(" "),
            "test --workspace --all-features --test behind_proxy -- --nocapture"
        );
        // A test filter after `--` that looks like a package flag is still a filter.
        let filter = ["--", "-p"].map(String::from);
        assert_eq!(
            cargo_test_args(&filter).join(" "),
            "test --workspace --all-features -- -p"
        );
    }

    #[test]
    fn naming_a_package_runs_that_package_instead_of_the_workspace() {
        for extra in [
            vec!["-p", "certbound-core"],
            vec!["--package", "certbound"],
            vec!["--package=xtask"],
            vec!["-pxtask", "--", "--nocapture"],
        ] {
            let extra: Vec<String> = extra.into_iter().map(String::from).collect();
            let args = cargo_test_args(&extra);
            assert!(!args.contains(&"--workspace".to_owned()), "{args:?}");
            assert_eq!(args[..2], ["test", "--all-features"]);
            assert_eq!(args[2..], extra[..]);
        }
    }

    #[test]
    fn unknown_tasks_and_flags_are_usage_errors() {
        assert!(matches!(run(&[]), Err(XtaskError::Usage(_))));
        assert!(matches!(
            run(&["tset".to_owned()]),
            Err(XtaskError::Usage(_))
        ));
        let bad = ["install-deps", "--yes"].map(String::from);
        assert!(matches!(run(&bad), Err(XtaskError::Usage(_))));
    }

    #[test]
    fn the_workspace_root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(workspace_root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"));
    }
}
