//! `LocalForward`, `RemoteForward` and `DynamicForward`, and the two options that change what
//! they mean: `ClearAllForwardings` and `GatewayPorts`.

use super::{Mapped, list, one};
use crate::evaluate::Options;
use crate::files::Line;
use crate::render::{Item, toml_string};

impl Mapped {
    pub(super) fn all_forwards(&mut self, options: &Options) {
        let yes = |keyword: &str| {
            options
                .first(keyword)
                .and_then(one)
                .is_some_and(|value| matches!(value.to_ascii_lowercase().as_str(), "yes" | "true"))
        };
        if let Some(line) = options
            .first("clearallforwardings")
            .filter(|_| yes("clearallforwardings"))
        {
            self.forward_lines = options.applied.iter().any(|l| l.lower.ends_with("forward"));
            self.forwards.push(Item::Comment(format!(
                "{} ({}): ssh makes no forward for this host, and neither does the import",
                line.text(),
                line.at
            )));
            return;
        }
        let gateway = options
            .first("gatewayports")
            .filter(|_| yes("gatewayports"));
        if let Some(line) = gateway {
            self.forwards.push(Item::Comment(format!(
                "{} ({}): the local and dynamic forwards without an address listen on every \
                 interface (*:), as ssh makes them",
                line.text(),
                line.at
            )));
        }
        for keyword in ["localforward", "remoteforward", "dynamicforward"] {
            if let Some(kind) = tunneld_config::ssh_config_key(keyword) {
                let wildcard = gateway.is_some() && keyword != "remoteforward";
                self.forwards(kind, options.all(keyword), wildcard);
            }
        }
    }

    fn forwards<'a>(&mut self, kind: &str, lines: impl Iterator<Item = &'a Line>, wildcard: bool) {
        let mut specs = Vec::new();
        for line in lines {
            self.forward_lines = true;
            let mut spec = line.args.join(":");
            // `port:host:hostport` and `port` have no listen address; a path is a socket.
            let fields = fields(&spec);
            if wildcard && !spec.contains('/') && (fields == 1 || (kind == "local" && fields == 3))
            {
                spec = format!("*:{spec}");
            }
            match accepted(kind, &spec) {
                Ok(()) => specs.push(spec),
                Err(why) => self.forwards.push(Item::Comment(format!(
                    "{} ({}): not imported: {why}",
                    line.text(),
                    line.at
                ))),
            }
        }
        if !specs.is_empty() {
            self.has_forwards = true;
            self.forwards.push(Item::Key(kind.to_owned(), list(&specs)));
        }
    }
}

/// The `:`-separated fields of a forward, brackets kept whole.
fn fields(spec: &str) -> usize {
    let mut depth = 0_i32;
    let mut count = 1;
    for c in spec.chars() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ':' if depth == 0 => count += 1,
            _ => {}
        }
    }
    count
}

/// Whether tunneld takes `spec` as a forward of `kind`: its own parser decides, on a file that
/// holds only that forward.
fn accepted(kind: &str, spec: &str) -> Result<(), String> {
    let text = format!(
        "[tunnels.t]\nhost = \"h\"\nuse_agent = true\n{kind} = [{}]\n",
        toml_string(spec)
    );
    let env = tunneld_config::Environment {
        user: "u".to_owned(),
    };
    tunneld_config::parse(std::path::Path::new("import.toml"), &text, &env)
        .map(|_| ())
        .map_err(|err| err.message())
}

#[cfg(test)]
mod tests {
    use super::{accepted, fields};

    #[test]
    fn unix_socket_forwards_are_taken_as_ssh_writes_them() {
        for (kind, spec) in [
            ("local", "/run/pg.sock:/var/run/postgresql/.s.PGSQL.5432"),
            ("local", "5432:/var/run/postgresql/.s.PGSQL.5432"),
            ("remote", "/home/tunnel/app.sock:localhost:3000"),
            ("remote", "8080:/run/app.sock"),
        ] {
            assert_eq!(accepted(kind, spec), Ok(()), "{spec}");
        }
        assert!(accepted("local", "pg.sock:db:5432").is_err());
    }

    #[test]
    fn fields_outside_brackets() {
        for (spec, n) in [
            ("1080", 1),
            ("[::1]:1080", 2),
            ("5432:db:5432", 3),
            ("[::1]:5432:[2001:db8::1]:5432", 4),
        ] {
            assert_eq!(fields(spec), n, "{spec}");
        }
    }
}
