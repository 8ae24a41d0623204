//! One line of ssh_config as OpenSSH splits it (readconf.c and `argv_split`): a keyword, then
//! `=` or blanks, then arguments with `"` and `'` quoting, backslash escapes, and `#` starting
//! a comment where an argument would start.

/// `Keyword args...` of one line; `None` for a blank or comment line.
pub(crate) fn split_line(line: &str) -> Result<Option<(String, Vec<String>)>, String> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let end = line
        .find(|c: char| c.is_whitespace() || c == '=')
        .unwrap_or(line.len());
    let (keyword, rest) = line.split_at(end);
    let rest = rest.trim_start();
    let rest = rest.strip_prefix('=').unwrap_or(rest);
    Ok(Some((keyword.to_owned(), split_args(rest)?)))
}

/// The arguments of a line, as OpenSSH's `argv_split` with comments ending the line.
pub(crate) fn split_args(text: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        match chars.peek() {
            None | Some('#') => return Ok(args),
            Some(_) => {}
        }
        let mut arg = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (quote, c) {
                (_, '\\') => match chars.peek().copied() {
                    Some(next @ ('\'' | '"' | '\\')) => {
                        arg.push(next);
                        chars.next();
                    }
                    Some(' ') if quote.is_none() => {
                        arg.push(' ');
                        chars.next();
                    }
                    _ => arg.push('\\'),
                },
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => arg.push(c),
                (None, '"' | '\'') => quote = Some(c),
                (None, c) if c.is_whitespace() => break,
                (None, c) => arg.push(c),
            }
        }
        if quote.is_some() {
            return Err("unterminated quote".to_owned());
        }
        args.push(arg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(line: &str) -> Option<(String, Vec<String>)> {
        split_line(line).unwrap_or_else(|err| panic!("{line}: {err}"))
    }

    #[test]
    fn keyword_and_arguments_as_openssh_splits_them() {
        let table: &[(&str, &str, &[&str])] = &[
            ("Host db", "Host", &["db"]),
            ("  HostName=db.example.com", "HostName", &["db.example.com"]),
            ("Port = 2222", "Port", &["2222"]),
            (
                "LocalForward 5432 localhost:5432 # pg",
                "LocalForward",
                &["5432", "localhost:5432"],
            ),
            (
                "IdentityFile \"/keys/my key\"",
                "IdentityFile",
                &["/keys/my key"],
            ),
            (
                "IdentityFile /keys/my\\ key",
                "IdentityFile",
                &["/keys/my key"],
            ),
            (
                "ProxyCommand 'ssh -W %h:%p gw'",
                "ProxyCommand",
                &["ssh -W %h:%p gw"],
            ),
            (
                "ProxyCommand ssh -W [%h]:%p gw",
                "ProxyCommand",
                &["ssh", "-W", "[%h]:%p", "gw"],
            ),
            ("Host a#b", "Host", &["a#b"]),
            ("\tUser\tadmin", "User", &["admin"]),
        ];
        for (line, keyword, args) in table {
            let (k, a) = split(line).unwrap_or_default();
            assert_eq!(
                (k.as_str(), a.iter().map(String::as_str).collect::<Vec<_>>()),
                (*keyword, args.to_vec()),
                "{line}"
            );
        }
        assert_eq!(split("   # a comment"), None);
        assert_eq!(split(""), None);
        assert_eq!(
            split_line("User \"admin").map_err(|e| e.to_string()),
            Err("unterminated quote".to_owned())
        );
    }
}
