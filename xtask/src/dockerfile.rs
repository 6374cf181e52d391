//! Reads the runtime stages of the `Dockerfile`, so that a test can check that they describe
//! the images `cargo xtask image` builds ([`crate::image::IMAGES`]): same binaries at the same
//! paths, entrypoint, user, labels, ports and `PATH`. Only the instructions those stages use
//! are understood.

/// What one `FROM ... AS <name>` stage says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stage {
    pub name: String,
    pub base: String,
    /// `(source, destination)` of each `COPY --from=build`.
    pub copies: Vec<(String, String)>,
    pub labels: Vec<(String, String)>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub exposed: Vec<String>,
    pub entrypoint: Option<Vec<String>>,
}

/// The stages of a Dockerfile, in order. Comments are skipped and `\` continuations joined;
/// an instruction it cannot read is returned as an error naming it.
pub fn stages(text: &str) -> Result<Vec<Stage>, String> {
    let mut stages: Vec<Stage> = Vec::new();
    for instruction in instructions(text) {
        let (keyword, rest) = instruction
            .split_once(char::is_whitespace)
            .unwrap_or((instruction.as_str(), ""));
        let rest = rest.trim();
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let (base, name) = match words.as_slice() {
                [base, as_, name] if as_.eq_ignore_ascii_case("as") => (*base, *name),
                [base] => (*base, ""),
                _ => return Err(format!("cannot read `FROM {rest}`")),
            };
            stages.push(Stage {
                name: name.to_string(),
                base: base.to_string(),
                ..Stage::default()
            });
            continue;
        }
        let Some(stage) = stages.last_mut() else {
            continue;
        };
        match keyword.as_str() {
            "COPY" => {
                let words: Vec<&str> = rest.split_whitespace().collect();
                if words.first() == Some(&"--from=build") {
                    let paths: Vec<&str> = words
                        .iter()
                        .copied()
                        .filter(|w| !w.starts_with("--"))
                        .collect();
                    if let [source, destination] = paths.as_slice() {
                        stage
                            .copies
                            .push(((*source).to_string(), (*destination).to_string()));
                    } else {
                        return Err(format!("cannot read `COPY {rest}`"));
                    }
                }
            }
            "LABEL" => stage.labels.extend(key_values(rest)?),
            "ENV" => stage.env.extend(
                key_values(rest)?
                    .into_iter()
                    .map(|(k, v)| format!("{k}={v}")),
            ),
            "USER" => stage.user = Some(rest.to_string()),
            "EXPOSE" => stage
                .exposed
                .extend(rest.split_whitespace().map(str::to_string)),
            "ENTRYPOINT" => stage.entrypoint = Some(json_strings(rest)?),
            _ => {}
        }
    }
    Ok(stages)
}

/// Instructions with continuations joined and comments dropped.
fn instructions(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                if !current.trim().is_empty() {
                    out.push(current.trim().to_string());
                }
                current.clear();
            }
        }
    }
    if !current.trim().is_empty() {
        out.push(current.trim().to_string());
    }
    out
}

/// `a="x y" b=z` pairs.
fn key_values(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            return Err(format!("expected key=value in `{text}`"));
        };
        let (value, after) = if let Some(quoted) = after.strip_prefix('"') {
            let end = quoted
                .find('"')
                .ok_or_else(|| format!("unterminated quote in `{text}`"))?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (&after[..end], &after[end..])
        };
        pairs.push((key.trim().to_string(), value.to_string()));
        rest = after.trim_start();
    }
    Ok(pairs)
}

/// `["a", "b"]` (exec form); no escapes inside the strings.
fn json_strings(text: &str) -> Result<Vec<String>, String> {
    let inner = text
        .trim()
        .strip_prefix('[')
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| format!("expected the exec form [\"...\"] in `{text}`"))?;
    inner
        .split(',')
        .map(|item| {
            item.trim()
                .strip_prefix('"')
                .and_then(|i| i.strip_suffix('"'))
                .map(str::to_string)
                .ok_or_else(|| format!("expected a quoted string in `{text}`"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{IMAGE_PATH, IMAGES};

    #[test]
    fn reads_stages_labels_and_exec_form() {
        let text = "FROM a AS build\nRUN x \\\n  y\n# c\nFROM b AS run\n\
                    LABEL k=\"v w\" \\\n      k2=\"x\"\nCOPY --from=build /s/bin /usr/bin/bin\n\
                    USER 1:1\nEXPOSE 1/tcp 2/tcp\nENTRYPOINT [\"/usr/bin/bin\", \"-v\"]\n";
        let parsed = stages(text).expect("parses");
        assert_eq!(parsed.len(), 2);
        let run = &parsed[1];
        assert_eq!(run.name, "run");
        assert_eq!(
            run.labels,
            vec![("k".into(), "v w".into()), ("k2".into(), "x".into())]
        );
        assert_eq!(run.copies, vec![("/s/bin".into(), "/usr/bin/bin".into())]);
        assert_eq!(run.user.as_deref(), Some("1:1"));
        assert_eq!(run.exposed, vec!["1/tcp".to_string(), "2/tcp".to_string()]);
        assert_eq!(
            run.entrypoint,
            Some(vec!["/usr/bin/bin".to_string(), "-v".to_string()])
        );
        assert!(stages("FROM a b c d").is_err());
    }

    /// The build stage installs what `cargo xtask setup` installs for building.
    #[test]
    fn dockerfile_build_stage_installs_what_setup_installs_for_building() {
        use crate::setup::{
            BPF_LINKER_FEATURES, BPF_LINKER_VERSION, BUILD_APT_PACKAGES, Kind, LLVM_BIN_DIR,
            REQUIREMENTS,
        };
        let path = crate::workspace_root().join("Dockerfile");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let build: String = instructions(&text)
            .into_iter()
            .skip_while(|i| !i.ends_with("AS build"))
            .take_while(|i| !i.starts_with("FROM ") || i.ends_with("AS build"))
            .collect::<Vec<_>>()
            .join("\n");
        let words: Vec<&str> = build.split_whitespace().collect();
        for package in BUILD_APT_PACKAGES {
            assert!(
                REQUIREMENTS
                    .iter()
                    .any(|r| matches!(r.kind, Kind::Apt(p) if p == *package)),
                "{package} is not a setup requirement"
            );
            assert!(
                words.contains(package),
                "the build stage does not install {package}"
            );
        }
        for expected in [
            format!("PATH={LLVM_BIN_DIR}:$PATH"),
            format!("--version {BPF_LINKER_VERSION}"),
            format!("--features {BPF_LINKER_FEATURES}"),
            "rustup component add rust-src".to_string(),
        ] {
            assert!(
                build.contains(&expected),
                "the build stage lacks `{expected}`"
            );
        }
    }

    /// The Dockerfile and `cargo xtask image` describe the same images.
    #[test]
    fn dockerfile_describes_the_images_xtask_builds() {
        let path = crate::workspace_root().join("Dockerfile");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
        let parsed = stages(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for spec in IMAGES {
            let stage = parsed
                .iter()
                .find(|s| s.name == spec.target)
                .unwrap_or_else(|| panic!("the Dockerfile has no `{}` stage", spec.target));
            assert_eq!(
                stage.base, "gcr.io/distroless/cc-debian12",
                "{}: the base xtask's layer reproduces",
                spec.target
            );
            let expected: Vec<(String, String)> = spec
                .binaries
                .iter()
                .map(|b| {
                    (
                        format!("/src/target/release/{}", b.name),
                        b.path.to_string(),
                    )
                })
                .collect();
            assert_eq!(stage.copies, expected, "{}: binaries", spec.target);
            assert_eq!(
                stage.entrypoint.as_deref(),
                Some(
                    spec.entrypoint
                        .iter()
                        .map(|s| (*s).to_string())
                        .collect::<Vec<_>>()
                        .as_slice()
                ),
                "{}: entrypoint",
                spec.target
            );
            assert_eq!(
                stage.user.as_deref(),
                Some(spec.user),
                "{}: user",
                spec.target
            );
            assert_eq!(stage.labels, spec.labels(), "{}: labels", spec.target);
            assert_eq!(
                stage.env,
                vec![IMAGE_PATH.to_string()],
                "{}: env",
                spec.target
            );
            assert_eq!(
                stage.exposed,
                spec.exposed_ports
                    .iter()
                    .map(|p| (*p).to_string())
                    .collect::<Vec<_>>(),
                "{}: ports",
                spec.target
            );
        }
    }
}
