//! tunneld's TOML, written out: tables of keys and comments.

/// One line of a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Item {
    /// `KEY = VALUE`, the value already in TOML.
    Key(String, String),
    /// `# TEXT`.
    Comment(String),
}

/// `[SECTION.NAME]` and its lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Table {
    pub(crate) section: &'static str,
    pub(crate) name: String,
    pub(crate) items: Vec<Item>,
}

/// A string in TOML, quoted and escaped.
pub(crate) fn toml_string(text: &str) -> String {
    toml::Value::String(text.to_owned()).to_string()
}

/// The whole file: comments at the top, then the tables.
pub(crate) fn document(header: &[String], tables: &[Table]) -> String {
    let mut out = String::new();
    for line in header {
        comment(&mut out, line);
    }
    for table in tables {
        out.push('\n');
        let bare = table
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
        if bare {
            out.push_str(&format!("[{}.{}]\n", table.section, table.name));
        } else {
            out.push_str(&format!(
                "[{}.{}]\n",
                table.section,
                toml_string(&table.name)
            ));
        }
        for item in &table.items {
            match item {
                Item::Key(key, value) => out.push_str(&format!("{key} = {value}\n")),
                Item::Comment(text) => comment(&mut out, text),
            }
        }
    }
    out
}

/// `# TEXT`, one comment line per line of text (a value read from a file may hold none, but
/// a comment must never end early and let the rest be read as TOML).
fn comment(out: &mut String, text: &str) {
    for line in text.lines() {
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
    if text.is_empty() {
        out.push_str("#\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_keys_and_comments() {
        let tables = [Table {
            section: "hosts",
            name: "db.corp".to_owned(),
            items: vec![
                Item::Key("hostname".to_owned(), toml_string("db \"x\"")),
                Item::Comment("two\nlines".to_owned()),
            ],
        }];
        assert_eq!(
            document(&["top".to_owned()], &tables),
            "# top\n\n[hosts.\"db.corp\"]\nhostname = 'db \"x\"'\n# two\n# lines\n"
        );
    }
}
