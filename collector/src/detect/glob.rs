//! Path globs of the rules file: `*` matches within one path component, `**` across
//! components, `?` one character; everything else is literal.

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
}

impl Glob {
    /// Checks and keeps a pattern.
    pub fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("empty pattern".into());
        }
        if pattern.contains("***") {
            return Err("`***` is not a pattern; use `**`".into());
        }
        Ok(Glob {
            pattern: pattern.to_string(),
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Whether `text` matches the whole pattern.
    pub fn matches(&self, text: &str) -> bool {
        matches(self.pattern.as_bytes(), text.as_bytes())
    }
}

fn matches(p: &[u8], t: &[u8]) -> bool {
    // Iterative matching with backtracking to the last star (two kinds of star).
    let (mut pi, mut ti) = (0, 0);
    // (pattern index after the star, text index it matched up to, crosses '/')
    let mut star: Option<(usize, usize, bool)> = None;
    while ti < t.len() {
        if pi + 1 < p.len() && p[pi] == b'*' && p[pi + 1] == b'*' {
            pi += 2;
            star = Some((pi, ti, true));
            continue;
        }
        if pi < p.len() && p[pi] == b'*' {
            pi += 1;
            star = Some((pi, ti, false));
            continue;
        }
        if pi < p.len() && (p[pi] == t[ti] || (p[pi] == b'?' && t[ti] != b'/')) {
            pi += 1;
            ti += 1;
            continue;
        }
        match star {
            Some((sp, st, cross)) if cross || t[st] != b'/' => {
                star = Some((sp, st + 1, cross));
                pi = sp;
                ti = st + 1;
            }
            _ => return false,
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, t: &str) -> bool {
        Glob::new(p).expect("pattern").matches(t)
    }

    #[test]
    fn stars() {
        assert!(m("/etc/cron.d/**", "/etc/cron.d/evil"));
        assert!(m("/etc/cron.d/**", "/etc/cron.d/a/b"));
        assert!(!m("/etc/cron.d/**", "/etc/cron.daily"));
        assert!(m(
            "/home/*/.ssh/authorized_keys*",
            "/home/bob/.ssh/authorized_keys2"
        ));
        assert!(!m(
            "/home/*/.ssh/authorized_keys",
            "/home/a/b/.ssh/authorized_keys"
        ));
        assert!(m("/etc/crontab", "/etc/crontab"));
        assert!(!m("/etc/crontab", "/etc/crontab2"));
        assert!(m("registry.example/*", "registry.example/app"));
        assert!(!m("registry.example/*", "registry.example/team/app"));
        assert!(m("registry.example/**", "registry.example/team/app:1"));
        assert!(m("kube-*", "kube-system"));
        assert!(m("*", ""));
        assert!(m("a?c", "abc"));
        assert!(!m("a?c", "a/c"));
        assert!(m("**/x", "/a/b/x"));
        assert!(Glob::new("").is_err());
        assert!(Glob::new("/a/***").is_err());
    }
}
