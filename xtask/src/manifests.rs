//! Validating `deploy/` against the Kubernetes schemas, offline: `kubernetes-validate` (a PyPI
//! package that ships the schemas; `cargo xtask setup` installs it) in strict mode, so that an
//! unknown field or a wrong type fails. Every manifest file under `deploy/base/` is validated on
//! its own, and so is what `kubectl kustomize` builds from each kustomization (`deploy/` and
//! every `deploy/variants/*/`). Each resource that passes or fails counts as one check.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result};

use crate::process;

/// The Kubernetes version the manifests are validated against (the oldest we support: it has
/// `appArmorProfile` in the security context).
pub const KUBERNETES_VERSION: &str = "1.32.0";

/// What validating the manifests found.
#[derive(Debug, Default)]
pub struct Report {
    /// Resources that validated.
    pub passed: u64,
    /// Resources that did not, and files or builds that could not be read.
    pub failed: u64,
    /// One line per failure.
    pub failures: Vec<String>,
}

/// Validates `deploy/` under `workspace_root`; writes the kustomize builds to `out`.
pub fn validate(workspace_root: &Path, out: &Path) -> Result<Report> {
    let deploy = workspace_root.join("deploy");
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut report = Report::default();
    let mut files = manifest_files(&deploy.join("base"))?;
    files.sort();

    let mut roots: Vec<PathBuf> = std::iter::once(deploy.clone())
        .filter(|d| d.join("kustomization.yaml").is_file())
        .collect();
    let variants = deploy.join("variants");
    if let Ok(entries) = std::fs::read_dir(&variants) {
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("kustomization.yaml").is_file())
            .collect();
        dirs.sort();
        roots.extend(dirs);
    }
    for root in &roots {
        let name = root
            .strip_prefix(workspace_root)
            .unwrap_or(root)
            .to_string_lossy()
            .replace('/', "-");
        let mut kustomize = Command::new("kubectl");
        kustomize.arg("kustomize").arg(root);
        match kustomize.stdin(Stdio::null()).output() {
            Ok(output) if output.status.success() => {
                let built = out.join(format!("{name}.yaml"));
                std::fs::write(&built, &output.stdout)
                    .with_context(|| format!("writing {}", built.display()))?;
                println!(
                    "manifests: kubectl kustomize {} -> {}",
                    root.display(),
                    built.display()
                );
                files.push(built);
            }
            Ok(output) => report.fail(format!(
                "`kubectl kustomize {}` failed: {}",
                root.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            )),
            Err(e) => {
                // Without kubectl the files are still validated one by one.
                println!("manifests: kubectl not available ({e}); validating the files only");
                break;
            }
        }
    }

    let mut cmd = Command::new("python3");
    cmd.args([
        "-m",
        "kubernetes_validate",
        "--strict",
        "--kubernetes-version",
        KUBERNETES_VERSION,
    ])
    .args(&files)
    .stdin(Stdio::null());
    let output = cmd
        .output()
        .with_context(|| format!("running `{}`", process::describe(&cmd)))?;
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    for line in text.lines() {
        println!("manifests: {line}");
    }
    let (passed, failures) = parse_output(&text);
    report.passed += passed;
    for failure in failures {
        report.fail(failure);
    }
    if !output.status.success() && report.failed == 0 {
        report.fail(format!(
            "`{}` failed ({}) without naming a resource",
            process::describe(&cmd),
            output.status
        ));
    }
    Ok(report)
}

impl Report {
    fn fail(&mut self, line: String) {
        println!("manifests: FAILED: {line}");
        self.failed += 1;
        self.failures.push(line);
    }
}

/// The manifests under `dir`: `*.yaml` files, without kustomizations (not Kubernetes resources).
fn manifest_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        if path.is_dir() {
            files.extend(manifest_files(&path)?);
        } else if path.extension().is_some_and(|e| e == "yaml")
            && path.file_name().is_some_and(|n| n != "kustomization.yaml")
        {
            files.push(path);
        }
    }
    Ok(files)
}

/// Counts kubernetes-validate's verdicts: `INFO <file> passed for resource ...` and `ERROR
/// <file> did not validate for resource ...` (or any other `ERROR` line, such as unparseable
/// YAML). Returns the passed count and the failure lines.
fn parse_output(text: &str) -> (u64, Vec<String>) {
    let mut passed = 0;
    let mut failures = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with("INFO ") && line.contains(" passed for resource ") {
            passed += 1;
        } else if line.starts_with("ERROR ") || line.starts_with("CRITICAL ") {
            failures.push(line.to_string());
        }
    }
    (passed, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A typo in a manifest is a failed check (needs kubernetes-validate: `cargo xtask setup`).
    #[test]
    fn a_wrong_field_fails_validation() {
        let root = std::env::temp_dir().join(format!("jw-manifests-{}", std::process::id()));
        let base = root.join("deploy").join("base");
        std::fs::create_dir_all(&base).expect("temp dir");
        std::fs::write(
            base.join("good.yaml"),
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ok\n",
        )
        .expect("write");
        std::fs::write(
            base.join("bad.yaml"),
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  ports:\n    \
             - port: seventy\n  selectr: {}\n",
        )
        .expect("write");
        let report = validate(&root, &root.join("out")).expect("kubernetes-validate runs");
        let _ = std::fs::remove_dir_all(&root);
        assert_eq!(report.passed, 1, "{:?}", report.failures);
        assert_eq!(report.failed, 1, "{:?}", report.failures);
        assert!(
            report.failures[0].contains("service/x"),
            "{:?}",
            report.failures
        );
    }

    #[test]
    fn counts_verdicts() {
        let text = "INFO a.yaml passed for resource namespace/jobwatch against version 1.32\n\
                    ERROR a.yaml did not validate for resource daemonset/x against version 1.32: \
                    spec.x: 'x' is not of type 'integer'\n\
                    WARN something\n\
                    INFO b.yaml passed for resource service/y against version 1.32\n";
        let (passed, failures) = parse_output(text);
        assert_eq!(passed, 2);
        assert_eq!(failures.len(), 1);
        assert!(failures[0].contains("daemonset/x"));
    }
}
