//! The settings shared by `[defaults]`, `[hosts.*]` and `[tunnels.*]`, checked one section at a
//! time so that every mistake is reported where it was written, used or not.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use crate::duration;
use crate::error::{ConfigError, Key, Source};
use crate::hostspec;
use crate::model::{HostKeyPolicy, IdentityFile, RekeyLimit};
use crate::raw::{Common, RawDuration};
use crate::rekey;

/// The ciphers tunneld can offer, by OpenSSH name (what russh implements).
pub const SUPPORTED_CIPHERS: &[&str] = &[
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
];

/// A value and where it was written, for errors that compare values of several sections.
#[derive(Clone, Debug)]
pub(crate) struct Located<T> {
    pub(crate) value: T,
    pub(crate) key: Key,
    pub(crate) span: Range<usize>,
}

/// One section's settings, checked; `None` where the section does not set the key.
#[derive(Clone, Debug, Default)]
pub(crate) struct Settings {
    pub(crate) user: Option<String>,
    pub(crate) identity_files: Option<Vec<IdentityFile>>,
    pub(crate) certificate_files: Option<Vec<IdentityFile>>,
    pub(crate) use_agent: Option<bool>,
    pub(crate) known_hosts: Option<PathBuf>,
    pub(crate) global_known_hosts: Option<PathBuf>,
    pub(crate) host_key_policy: Option<HostKeyPolicy>,
    pub(crate) update_host_keys: Option<bool>,
    /// `Some(None)`: keepalives turned off with `"0s"`.
    pub(crate) keepalive_interval: Option<Option<Duration>>,
    pub(crate) keepalive_max: Option<u32>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) backoff_min: Option<Located<Duration>>,
    pub(crate) backoff_max: Option<Located<Duration>>,
    pub(crate) backoff_max_network: Option<Located<Duration>>,
    pub(crate) compression: Option<bool>,
    pub(crate) ciphers: Option<Vec<String>>,
    pub(crate) exit_on_forward_failure: Option<bool>,
    pub(crate) rekey_limit: Option<RekeyLimit>,
    pub(crate) proxy: Option<crate::Proxy>,
}

/// Checks the shared settings of the section at `section` (`defaults`, `hosts.NAME`, ...).
/// Relative paths are taken relative to `base_dir`, the configuration file's directory.
pub(crate) fn check(
    common: Common<'_>,
    section: &Key,
    source: &Source<'_>,
    base_dir: &Path,
) -> Result<Settings, ConfigError> {
    let err = |span: Range<usize>, key: Key, message: String| source.error(&span, key, message);

    let user = match common.user {
        Some(user) => {
            hostspec::check_user(user.get_ref())
                .map_err(|e| err(user.span(), section.field("user"), e))?;
            Some(user.get_ref().clone())
        }
        None => None,
    };

    // Certificates are named the way keys are: a path or `credential:NAME`.
    let files_of = |raw: Option<&Spanned<Vec<Spanned<String>>>>, name: &str| match raw {
        Some(list) => {
            let key = section.field(name);
            let mut files = Vec::new();
            for (index, file) in list.get_ref().iter().enumerate() {
                let checked = identity_file(file.get_ref(), base_dir)
                    .map_err(|e| err(file.span(), key.index(index), e))?;
                files.push(checked);
            }
            Ok(Some(files))
        }
        None => Ok(None),
    };
    let identity_files = files_of(common.identity_files, "identity_files")?;
    let certificate_files = files_of(common.certificate_files, "certificate_files")?;

    let path_of = |raw: Option<&Spanned<String>>, name: &str| match raw {
        Some(path) => checked_path(path.get_ref(), base_dir)
            .map(Some)
            .map_err(|e| err(path.span(), section.field(name), e)),
        None => Ok(None),
    };
    let known_hosts = path_of(common.known_hosts, "known_hosts")?;
    let global_known_hosts = path_of(common.global_known_hosts, "global_known_hosts")?;

    let host_key_policy = match common.host_key_policy {
        Some(policy) => Some(match policy.get_ref().as_str() {
            "strict" => HostKeyPolicy::Strict,
            "accept-new" => HostKeyPolicy::AcceptNew,
            other => {
                return Err(err(
                    policy.span(),
                    section.field("host_key_policy"),
                    format!(
                        "{other:?} is not a host key policy (expected \"strict\" or \"accept-new\")"
                    ),
                ));
            }
        }),
        None => None,
    };

    let proxy = match common.proxy {
        Some(raw) => Some(crate::proxy::parse(raw.get_ref()).map_err(|e| {
            err(
                raw.span(),
                section.field("proxy"),
                format!("{e} (expected {})", crate::proxy::EXPECTED),
            )
        })?),
        None => None,
    };

    let duration_of = |raw: &Spanned<RawDuration>, name: &str| {
        duration::parse(raw.get_ref()).map_err(|e| err(raw.span(), section.field(name), e))
    };
    let positive = |raw: &Spanned<RawDuration>, name: &str| {
        let value = duration_of(raw, name)?;
        if value.is_zero() {
            return Err(err(
                raw.span(),
                section.field(name),
                format!("{name} cannot be zero (expected a duration longer than zero)"),
            ));
        }
        Ok(value)
    };
    let located = |raw: &Spanned<RawDuration>, name: &str| {
        Ok::<_, ConfigError>(Located {
            value: positive(raw, name)?,
            key: section.field(name),
            span: raw.span(),
        })
    };

    let keepalive_interval = match common.keepalive_interval {
        Some(raw) => {
            let value = duration_of(raw, "keepalive_interval")?;
            Some((!value.is_zero()).then_some(value))
        }
        None => None,
    };

    let keepalive_max = match common.keepalive_max {
        Some(max) => Some(
            u32::try_from(*max.get_ref())
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    err(
                        max.span(),
                        section.field("keepalive_max"),
                        format!(
                            "{} is out of range (expected 1 or more unanswered keepalives)",
                            max.get_ref()
                        ),
                    )
                })?,
        ),
        None => None,
    };

    let ciphers = match common.ciphers {
        Some(list) => Some(ciphers(list, &section.field("ciphers"), source)?),
        None => None,
    };

    Ok(Settings {
        proxy,
        user,
        identity_files,
        certificate_files,
        use_agent: common.use_agent.map(|b| *b.get_ref()),
        known_hosts,
        global_known_hosts,
        host_key_policy,
        update_host_keys: common.update_host_keys.map(|b| *b.get_ref()),
        keepalive_interval,
        keepalive_max,
        connect_timeout: common
            .connect_timeout
            .map(|raw| positive(raw, "connect_timeout"))
            .transpose()?,
        backoff_min: common
            .backoff_min
            .map(|raw| located(raw, "backoff_min"))
            .transpose()?,
        backoff_max: common
            .backoff_max
            .map(|raw| located(raw, "backoff_max"))
            .transpose()?,
        backoff_max_network: common
            .backoff_max_network
            .map(|raw| located(raw, "backoff_max_network"))
            .transpose()?,
        compression: common.compression.map(|b| *b.get_ref()),
        ciphers,
        exit_on_forward_failure: common.exit_on_forward_failure.map(|b| *b.get_ref()),
        rekey_limit: common
            .rekey_limit
            .map(|raw| {
                rekey::parse(raw.get_ref())
                    .map_err(|e| err(raw.span(), section.field("rekey_limit"), e))
            })
            .transpose()?,
    })
}

fn ciphers(
    list: &Spanned<Vec<Spanned<String>>>,
    key: &Key,
    source: &Source<'_>,
) -> Result<Vec<String>, ConfigError> {
    let allowed = SUPPORTED_CIPHERS.join(", ");
    if list.get_ref().is_empty() {
        return Err(source.error(
            &list.span(),
            key,
            format!(
                "the list is empty (expected one or more of {allowed}, \
                 or no ciphers key for the built-in choice)"
            ),
        ));
    }
    let mut names: Vec<String> = Vec::new();
    for (index, name) in list.get_ref().iter().enumerate() {
        let name_ref = name.get_ref();
        if !SUPPORTED_CIPHERS.contains(&name_ref.as_str()) {
            return Err(source.error(
                &name.span(),
                key.index(index),
                format!("{name_ref:?} is not a supported cipher (expected one of {allowed})"),
            ));
        }
        if names.contains(name_ref) {
            return Err(source.error(
                &name.span(),
                key.index(index),
                format!("{name_ref:?} is listed twice (expected each cipher once)"),
            ));
        }
        names.push(name_ref.clone());
    }
    Ok(names)
}

/// `credential:NAME` or a path.
fn identity_file(text: &str, base_dir: &Path) -> Result<IdentityFile, String> {
    match text.strip_prefix("credential:") {
        Some(name) if name.is_empty() || name == "." || name == ".." || name.contains('/') => {
            Err(format!(
                "{text:?} does not name a credential (expected credential:NAME, \
                 NAME as in LoadCredential=, without /)"
            ))
        }
        Some(name) => Ok(IdentityFile::Credential(name.to_owned())),
        None => checked_path(text, base_dir).map(IdentityFile::Path),
    }
}

/// A path from the file: absolute as written, or relative to the configuration file's directory.
/// `~` is not expanded (tunneld runs as a service, whose home is rarely the one meant).
pub(crate) fn checked_path(text: &str, base_dir: &Path) -> Result<PathBuf, String> {
    if text.is_empty() {
        return Err("the path is empty (expected an absolute path)".to_owned());
    }
    if text.starts_with('~') {
        return Err(format!(
            "{text:?} starts with ~, which is not expanded (expected the full path, \
             like /etc/tunneld/keys/NAME)"
        ));
    }
    if text.contains('\0') {
        return Err(format!(
            "{text:?} contains a NUL character (expected a path)"
        ));
    }
    let path = Path::new(text);
    Ok(if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_dir.join(path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_files() {
        let base = Path::new("/etc/tunneld");
        assert_eq!(
            identity_file("/etc/tunneld/keys/db", base),
            Ok(IdentityFile::Path(PathBuf::from("/etc/tunneld/keys/db")))
        );
        assert_eq!(
            identity_file("keys/db", base),
            Ok(IdentityFile::Path(PathBuf::from("/etc/tunneld/keys/db")))
        );
        assert_eq!(
            identity_file("credential:office", base),
            Ok(IdentityFile::Credential("office".to_owned()))
        );
        for bad in [
            "credential:",
            "credential:a/b",
            "credential:..",
            "~/.ssh/id_ed25519",
            "",
        ] {
            assert!(identity_file(bad, base).is_err(), "{bad}");
        }
        assert_eq!(
            identity_file("~/.ssh/id", base),
            Err(
                "\"~/.ssh/id\" starts with ~, which is not expanded (expected the full path, \
                 like /etc/tunneld/keys/NAME)"
                    .to_owned()
            )
        );
    }
}
