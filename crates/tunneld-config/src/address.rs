//! The small grammar shared by forwards and host strings: fields separated by `:`, where a field
//! in brackets (`[2001:db8::1]`) may contain colons, and ports.

/// One `:`-separated field of a forward or host string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Field<'a> {
    /// The text, without brackets.
    pub(crate) text: &'a str,
    /// Whether it was written in brackets.
    pub(crate) bracketed: bool,
}

/// Splits `s` at the colons that are outside brackets. `None` when a bracket is not closed or is
/// followed by something other than `:` or the end.
pub(crate) fn split_fields(s: &str) -> Option<Vec<Field<'_>>> {
    let mut fields = Vec::new();
    let mut rest = s;
    loop {
        if let Some(inner) = rest.strip_prefix('[') {
            let (text, after) = inner.split_once(']')?;
            fields.push(Field {
                text,
                bracketed: true,
            });
            if after.is_empty() {
                return Some(fields);
            }
            rest = after.strip_prefix(':')?;
        } else {
            match rest.split_once(':') {
                Some((text, after)) => {
                    check_unbracketed(text)?;
                    fields.push(Field {
                        text,
                        bracketed: false,
                    });
                    rest = after;
                }
                None => {
                    check_unbracketed(rest)?;
                    fields.push(Field {
                        text: rest,
                        bracketed: false,
                    });
                    return Some(fields);
                }
            }
        }
    }
}

/// A bracket in the middle of a field is a typo, not an address.
fn check_unbracketed(text: &str) -> Option<()> {
    (!text.contains(['[', ']'])).then_some(())
}

/// Parses a port number. `allow_zero` is for remote forwards, where 0 lets the server pick.
pub(crate) fn port(text: &str, allow_zero: bool) -> Result<u16, String> {
    let range = if allow_zero { "0-65535" } else { "1-65535" };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{text:?} is not a port number (expected {range})"));
    }
    match text.parse::<u32>() {
        Ok(0) if !allow_zero => Err(format!("port 0 is out of range (expected {range})")),
        Ok(n) => {
            u16::try_from(n).map_err(|_| format!("port {n} is out of range (expected {range})"))
        }
        Err(_) => Err(format!("port {text} is out of range (expected {range})")),
    }
}

/// Checks a host name or address (IPv6 without brackets): not empty, and nothing that cannot be
/// part of a name or address.
pub(crate) fn host(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err("the host name is empty".to_owned());
    }
    if let Some(c) = text
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '/' | '@' | '[' | ']' | '*'))
    {
        return Err(format!("host name {text:?} contains {c:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(s: &str) -> Option<Vec<(&str, bool)>> {
        split_fields(s).map(|v| v.into_iter().map(|f| (f.text, f.bracketed)).collect())
    }

    #[test]
    fn splits_at_colons_outside_brackets() {
        assert_eq!(texts("a:b"), Some(vec![("a", false), ("b", false)]));
        assert_eq!(
            texts("[::1]:5432:db:5432"),
            Some(vec![
                ("::1", true),
                ("5432", false),
                ("db", false),
                ("5432", false)
            ])
        );
        assert_eq!(texts(":80"), Some(vec![("", false), ("80", false)]));
        assert_eq!(texts(""), Some(vec![("", false)]));
        assert_eq!(texts("[::1]"), Some(vec![("::1", true)]));
    }

    #[test]
    fn rejects_broken_brackets() {
        assert_eq!(texts("[::1"), None);
        assert_eq!(texts("[::1]x:80"), None);
        assert_eq!(texts("a]:80"), None);
        assert_eq!(texts("80:a[b"), None);
    }

    #[test]
    fn ports() {
        assert_eq!(port("22", false), Ok(22));
        assert_eq!(port("65535", false), Ok(65535));
        assert_eq!(port("0", true), Ok(0));
        assert_eq!(
            port("0", false),
            Err("port 0 is out of range (expected 1-65535)".to_owned())
        );
        assert_eq!(
            port("65536", true),
            Err("port 65536 is out of range (expected 0-65535)".to_owned())
        );
        assert_eq!(
            port("99999999999999999999", false),
            Err("port 99999999999999999999 is out of range (expected 1-65535)".to_owned())
        );
        assert_eq!(
            port("+22", false),
            Err("\"+22\" is not a port number (expected 1-65535)".to_owned())
        );
        assert!(port("", false).is_err());
        assert!(port("ssh", false).is_err());
    }

    #[test]
    fn hosts() {
        assert!(host("db.example.com").is_ok());
        assert!(host("2001:db8::1").is_ok());
        assert!(host("").is_err());
        assert!(host("a b").is_err());
        assert!(host("a/b").is_err());
        assert!(host("u@h").is_err());
    }
}
