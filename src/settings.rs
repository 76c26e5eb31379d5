//! `throng serve --config path.toml`: a settings file whose keys are the flags' long
//! names (`max-connections = 50000`; `max_connections` is the same key), read before
//! the flags are parsed and applied as the flags' defaults. Precedence is therefore
//! flag > `THRONG_*` environment variable > file > built-in default, which is clap's
//! own order for a flag, its `env` and its default.
//!
//! Values: strings, integers, floats and booleans as the flag would take them; an array
//! for a flag that takes a list (`cors-origin = ["https://a.example"]`). A key that is
//! no flag, a table, or a date is an error naming the key: a typo must not be ignored.
//! A value of the wrong type for its flag is reported by the flag's own parser.
//!
//! A leaf module over clap and toml: it knows no flag by name but `config` and `help`.

use std::path::Path;

use clap::Command;

/// Flags a file may not set.
const NOT_IN_FILE: [&str; 3] = ["config", "help", "version"];

/// Reads `path` and makes its settings the defaults of `command`'s flags.
pub fn apply_file(command: Command, path: &Path) -> Result<Command, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    apply(command, &text).map_err(|e| format!("{}: {e}", path.display()))
}

/// Makes the settings in TOML `text` the defaults of `command`'s flags.
pub fn apply(mut command: Command, text: &str) -> Result<Command, String> {
    let table: toml::Table = text.parse().map_err(|e| format!("not valid TOML: {e}"))?;
    for (key, value) in &table {
        let long = key.replace('_', "-");
        let id = command
            .get_arguments()
            .find(|a| a.get_long() == Some(long.as_str()))
            .map(|a| a.get_id().as_str().to_owned())
            .filter(|id| !NOT_IN_FILE.contains(&id.as_str()))
            .ok_or_else(|| {
                format!(
                    "unknown key `{key}`: not a `{}` flag (see --help)",
                    command.get_name()
                )
            })?;
        let values = scalars(key, value)?;
        command = command.mut_arg(id, |arg| arg.default_values(values));
    }
    Ok(command)
}

/// A value as the strings a flag parses.
fn scalars(key: &str, value: &toml::Value) -> Result<Vec<String>, String> {
    let one = |v: &toml::Value| match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(n) => Ok(n.to_string()),
        toml::Value::Float(x) => Ok(x.to_string()),
        toml::Value::Boolean(b) => Ok(b.to_string()),
        _ => Err(format!(
            "key `{key}`: expected a string, number, boolean or a list of them"
        )),
    };
    match value {
        toml::Value::Array(items) => items.iter().map(one).collect(),
        other => one(other).map(|v| vec![v]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{Arg, ArgAction};

    fn command() -> Command {
        Command::new("serve")
            .arg(Arg::new("port").long("port").default_value("8080"))
            .arg(
                Arg::new("max_connections")
                    .long("max-connections")
                    .env("TEST_SETTINGS_MAX_CONNECTIONS"),
            )
            .arg(
                Arg::new("cors_origin")
                    .long("cors-origin")
                    .value_delimiter(',')
                    .action(ArgAction::Append),
            )
            .arg(
                Arg::new("cors_credentials")
                    .long("cors-credentials")
                    .action(ArgAction::SetTrue),
            )
            .arg(Arg::new("config").long("config"))
    }

    #[test]
    fn file_values_become_defaults_and_flags_win() {
        let text = "port = 9000\nmax_connections = 5\ncors-origin = [\"a\", \"b\"]\n\
                    cors-credentials = true\n";
        let m = apply(command(), text)
            .expect("valid")
            .try_get_matches_from(["serve", "--port", "7000"])
            .expect("parse");
        assert_eq!(
            m.get_one::<String>("port").map(String::as_str),
            Some("7000")
        );
        assert_eq!(
            m.get_one::<String>("max_connections").map(String::as_str),
            Some("5")
        );
        let origins: Vec<&String> = m.get_many("cors_origin").expect("origins").collect();
        assert_eq!(origins, ["a", "b"]);
        assert_eq!(m.get_one::<bool>("cors_credentials"), Some(&true));
    }

    #[test]
    fn unknown_keys_tables_and_the_config_key_are_errors_naming_the_key() {
        let err = apply(command(), "prot = 1\n").expect_err("typo");
        assert!(err.contains("unknown key `prot`"), "{err}");
        let err = apply(command(), "config = \"x.toml\"\n").expect_err("config");
        assert!(err.contains("`config`"), "{err}");
        let err = apply(command(), "[port]\nx = 1\n").expect_err("table");
        assert!(err.contains("key `port`"), "{err}");
        let err = apply(command(), "port = ").expect_err("syntax");
        assert!(err.contains("not valid TOML"), "{err}");
    }
}
