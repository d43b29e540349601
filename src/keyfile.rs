//! age identity files (`age-keygen` output): the backup identity file of
//! restores and the catalog key that seals tenant passwords.
//!
//! Every line that is not blank nor a `#` comment must be an
//! `AGE-SECRET-KEY-1…` key: a line that does not parse is an error naming its
//! number, never silently skipped. This module must never print a key.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// The X25519 identities of the file at `path`, in file order (at least one).
pub fn read_identities(path: &Path) -> Result<Vec<age::x25519::Identity>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading age identity file {}", path.display()))?;
    let mut ids = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.parse::<age::x25519::Identity>() {
            Ok(id) => ids.push(id),
            Err(_) => bail!(
                "age identity file {} line {}: not an AGE-SECRET-KEY-1… key",
                path.display(),
                n + 1
            ),
        }
    }
    if ids.is_empty() {
        bail!(
            "age identity file {} holds no AGE-SECRET-KEY-1… line",
            path.display()
        );
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_keys_in_order_and_names_a_bad_line() {
        let dir = std::env::temp_dir().join(format!("keyfile-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (
            age::x25519::Identity::generate(),
            age::x25519::Identity::generate(),
        );
        use secrecy::ExposeSecret;
        let good = dir.join("good");
        std::fs::write(
            &good,
            format!(
                "# created: today\n{}\n\n{}\n",
                a.to_string().expose_secret(),
                b.to_string().expose_secret()
            ),
        )
        .unwrap();
        let ids = read_identities(&good).unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[0].to_public().to_string(), a.to_public().to_string());
        let bad = dir.join("bad");
        std::fs::write(
            &bad,
            format!("{}\nnot a key\n", a.to_string().expose_secret()),
        )
        .unwrap();
        let err = format!("{:#}", read_identities(&bad).err().unwrap());
        assert!(err.contains("line 2"), "{err}");
        assert!(
            !err.contains("AGE-SECRET-KEY-1Q"),
            "never prints a key: {err}"
        );
        std::fs::write(&bad, "# nothing\n").unwrap();
        let err = format!("{:#}", read_identities(&bad).err().unwrap());
        assert!(err.contains("no AGE-SECRET-KEY"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
