//! One settings-file mechanism for every thresh binary (`thresh serve`, `thresh-train`).
//!
//! `--config FILE` names a TOML file whose keys are the command's own flags: a key is a
//! flag's field name or its long name (`max_queue = 8` and `max-queue = 8` both set
//! `--max-queue`), a value is a string, number or boolean (`true` sets a switch, `false`
//! leaves it off), and an array repeats the flag. [`expand`] turns the file into flags that
//! clap then parses with the command line, so the file's values get exactly the parsing,
//! checks and `--help` of the flags they stand for. Precedence, highest first:
//!
//! 1. a flag on the command line (it replaces the file's value, lists included);
//! 2. the flag's environment variable (`THRESH_*`), where it has one;
//! 3. the file;
//! 4. the flag's default.
//!
//! A key that names no flag is an error, so a typo never passes silently. Where the
//! command's `config` argument has an environment variable (`THRESH_CONFIG`), the file can be
//! named there instead of with `--config`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::{Arg, Command};

/// Why a settings file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// `--config` without a file.
    #[error("--config needs a file")]
    MissingPath,
    /// The file cannot be read.
    #[error("--config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The failure.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("--config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A key names no flag of the command, or its value has the wrong shape.
    #[error("--config {path}: {message}")]
    Key {
        /// The file.
        path: PathBuf,
        /// What is wrong with which key.
        message: String,
    },
}

/// Where a command's own arguments start in `args`, and that (sub)command: past the program
/// name and every subcommand name given.
fn leaf<'a>(cmd: &'a Command, args: &[OsString]) -> (usize, &'a Command) {
    let mut at = 1;
    let mut cmd = cmd;
    while let Some(name) = args.get(at).and_then(|a| a.to_str()) {
        match cmd.find_subcommand(name) {
            Some(sub) => {
                cmd = sub;
                at += 1;
            }
            None => break,
        }
    }
    (at, cmd)
}

/// Removes `--config FILE` / `--config=FILE` from `args[from..]` and returns the file.
fn take_config(args: &mut Vec<OsString>, from: usize) -> Result<Option<PathBuf>, SettingsError> {
    let Some(pos) = args[from.min(args.len())..]
        .iter()
        .position(|a| a == "--config" || a.to_string_lossy().starts_with("--config="))
        .map(|p| p + from)
    else {
        return Ok(None);
    };
    let arg = args.remove(pos);
    let lossy = arg.to_string_lossy();
    if let Some(path) = lossy.strip_prefix("--config=") {
        return Ok(Some(PathBuf::from(path)));
    }
    if pos < args.len() {
        return Ok(Some(PathBuf::from(args.remove(pos))));
    }
    Err(SettingsError::MissingPath)
}

/// Whether `args` (the command's own) already give `arg`.
fn given(arg: &Arg, args: &[OsString]) -> bool {
    let long = arg.get_long().map(|l| format!("--{l}"));
    let short = arg.get_short().map(|s| format!("-{s}"));
    args.iter().map(|a| a.to_string_lossy()).any(|a| {
        long.as_deref()
            .is_some_and(|l| a == l || a.starts_with(&format!("{l}=")))
            || short
                .as_deref()
                .is_some_and(|s| a.starts_with(s) && !a.starts_with("--"))
    })
}

/// Whether `arg`'s environment variable is set (it then wins over the file).
fn env_set(arg: &Arg) -> bool {
    arg.get_env()
        .and_then(std::env::var_os)
        .is_some_and(|v| !v.is_empty())
}

/// The flags one key stands for.
fn flags_of(arg: &Arg, key: &str, value: &toml::Value) -> Result<Vec<OsString>, String> {
    let Some(long) = arg.get_long() else {
        return Err(format!("`{key}` is not a flag"));
    };
    let switch = !arg.get_action().takes_values();
    let one = |v: &toml::Value| -> Result<Option<OsString>, String> {
        let text = match v {
            toml::Value::Boolean(b) if switch => {
                return Ok(b.then(|| OsString::from(format!("--{long}"))));
            }
            _ if switch => {
                return Err(format!("`{key}` is a switch: give true or false"));
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                return Err(format!(
                    "`{key}` = {other} is not a string, number or boolean"
                ));
            }
        };
        Ok(Some(OsString::from(format!("--{long}={text}"))))
    };
    match value {
        toml::Value::Array(items) => {
            let mut out = Vec::new();
            for v in items {
                out.extend(one(v)?);
            }
            Ok(out)
        }
        v => Ok(one(v)?.into_iter().collect()),
    }
}

/// The flags a settings file stands for, for the command `cmd` whose own arguments are
/// `own` (flags already there, and those whose environment variable is set, are skipped).
pub fn file_flags(
    cmd: &Command,
    path: &Path,
    own: &[OsString],
) -> Result<Vec<OsString>, SettingsError> {
    let text = std::fs::read_to_string(path).map_err(|source| SettingsError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| SettingsError::Parse {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let key_error = |message: String| SettingsError::Key {
        path: path.to_path_buf(),
        message,
    };
    let mut out = Vec::new();
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let arg = cmd
            .get_arguments()
            .find(|a| a.get_id() == key.as_str() || a.get_long() == Some(long.as_str()))
            .filter(|a| a.get_id() != "config" && a.get_id() != "help" && a.get_id() != "version")
            .ok_or_else(|| {
                key_error(format!(
                    "`{key}` is not a setting of `{}` (the keys are its flags; see --help)",
                    cmd.get_name()
                ))
            })?;
        if given(arg, own) || env_set(arg) {
            continue;
        }
        out.extend(flags_of(arg, key, value).map_err(key_error)?);
    }
    Ok(out)
}

/// Expands `--config FILE` in `args` (the process arguments, program name first) into the
/// flags the file stands for, placed after the subcommand names, for `cmd` (the binary's
/// `clap::CommandFactory::command()`). Without `--config` (or the environment variable of
/// the command's `config` argument) the arguments come back unchanged.
pub fn expand(
    cmd: &Command,
    args: impl IntoIterator<Item = impl Into<OsString>>,
) -> Result<Vec<OsString>, SettingsError> {
    let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut cmd = cmd.clone();
    cmd.build();
    let (at, leaf_cmd) = leaf(&cmd, &args);
    let path = match take_config(&mut args, at)? {
        Some(p) => p,
        None => {
            let from_env = leaf_cmd
                .get_arguments()
                .find(|a| a.get_id() == "config")
                .and_then(Arg::get_env)
                .and_then(std::env::var_os)
                .filter(|v| !v.is_empty());
            match from_env {
                Some(p) => PathBuf::from(p),
                None => return Ok(args),
            }
        }
    };
    let flags = file_flags(leaf_cmd, &path, &args[at.min(args.len())..])?;
    let mut out: Vec<OsString> = args[..at.min(args.len())].to_vec();
    out.extend(flags);
    out.extend(args[at.min(args.len())..].iter().cloned());
    Ok(out)
}
