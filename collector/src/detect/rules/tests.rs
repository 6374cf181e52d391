use super::*;

fn user(text: &str) -> Result<RuleSet, RulesError> {
    parse(Some((Path::new("/etc/jobwatch/rules.yaml"), text)))
}

fn rule<'a>(set: &'a RuleSet, id: &str) -> &'a Rule {
    set.rules
        .iter()
        .find(|r| r.id == id)
        .unwrap_or_else(|| panic!("no rule {id}"))
}

#[test]
fn shipped_rules_cover_the_eight_detectors_with_attack_ids() {
    let set = parse(None).expect("shipped rules parse");
    let ids: Vec<&str> = set.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "JW001", "JW002", "JW003", "JW004", "JW005", "JW006", "JW007", "JW008"
        ]
    );
    let detectors: Vec<&str> = set.rules.iter().map(|r| r.detector.name()).collect();
    assert_eq!(detectors, DETECTORS);
    for r in &set.rules {
        assert_eq!(r.technique, "T1053.007", "{}", r.id);
        assert!(!r.title.is_empty() && !r.description.is_empty(), "{}", r.id);
        assert!(!r.data_sources.is_empty(), "{}", r.id);
    }
    assert_eq!(rule(&set, "JW001").data_sources, ["DS0003"]);
    assert_eq!(rule(&set, "JW001").mitigations, ["M1018"]);
    assert_eq!(rule(&set, "JW002").mitigations, ["M1026"]);
    assert_eq!(rule(&set, "JW003").severity, Severity::Low);
    assert_eq!(rule(&set, "JW005").scope, Scope::Containers);
    match &rule(&set, "JW008").detector {
        Detector::CronJobBaseline(p) => {
            assert_eq!(p.learning_runs, 2);
            assert_eq!(p.max_items, 1024);
        }
        d => panic!("JW008 is {d:?}"),
    }
    assert!(set.exceptions.is_empty());
}

#[test]
fn a_user_file_disables_changes_severity_adds_rules_and_exceptions() {
    let set = user(
        "rules:
  - id: JW003
    enabled: false
  - id: JW004
    severity: critical
  - id: JW008
    params:
      learning_runs: 5
  - id: ACME-1
    detector: persistence_write
    title: Writes to /srv/hooks
    severity: medium
    scope: all
    params:
      paths: [/srv/hooks/**]
exceptions:
  - rules: [JW006]
    namespaces: [ci-*]
    comment: CI runners curl installers
  - images: [registry.example/backup:*]
    binaries: [/usr/bin/tar]
",
    )
    .expect("valid user file");
    assert!(set.rules.iter().all(|r| r.id != "JW003"), "JW003 disabled");
    assert_eq!(rule(&set, "JW004").severity, Severity::Critical);
    // Only the given param changed; the others keep the shipped values.
    match &rule(&set, "JW008").detector {
        Detector::CronJobBaseline(p) => {
            assert_eq!(p.learning_runs, 5);
            assert_eq!(p.max_items, 1024);
        }
        d => panic!("{d:?}"),
    }
    let acme = rule(&set, "ACME-1");
    assert_eq!(acme.scope, Scope::All);
    assert_eq!(acme.technique, "T1053.007");
    match &acme.detector {
        Detector::PersistenceWrite(p) => {
            assert!(p.paths[0].matches("/srv/hooks/post"));
            assert!(!p.any_host_mount_write);
        }
        d => panic!("{d:?}"),
    }
    assert_eq!(set.exceptions.len(), 2);
    let ci = Subject {
        rule: "JW006",
        namespace: "ci-42",
        image: "x",
        cronjob: "c",
        binary: "/bin/sh",
    };
    assert!(set.exceptions[0].covers(&ci));
    assert!(!set.exceptions[0].covers(&Subject {
        rule: "JW004",
        ..ci
    }));
    assert!(!set.exceptions[0].covers(&Subject {
        namespace: "prod",
        ..ci
    }));
    let backup = Subject {
        rule: "JW008",
        namespace: "ops",
        image: "registry.example/backup:1.2",
        cronjob: "nightly",
        binary: "/usr/bin/tar",
    };
    assert!(set.exceptions[1].covers(&backup));
    assert!(!set.exceptions[1].covers(&Subject {
        binary: "/bin/sh",
        ..backup
    }));
}

#[test]
fn defaults_false_keeps_only_the_users_rules() {
    let set = user(
        "defaults: false
rules:
  - id: ONLY
    detector: fileless
    title: Fileless
    severity: high
",
    )
    .expect("valid");
    assert_eq!(set.rules.len(), 1);
    assert_eq!(set.rules[0].scope, Scope::Jobs);
}

fn error(text: &str) -> String {
    user(text).expect_err("must be refused").to_string()
}

#[test]
fn errors_name_the_file_the_line_and_the_reason() {
    assert_eq!(
        error("rules:\n  - id: JW004\n    severity: severe\n"),
        "/etc/jobwatch/rules.yaml:3: rules[0].severity: unknown variant `severe`, expected one of \
         `info`, `low`, `medium`, `high`, `critical`"
    );
    assert_eq!(
        error("rules:\n  - id: JW004\n    sevrity: high\n"),
        "/etc/jobwatch/rules.yaml:3: rules[0]: unknown field `sevrity`, expected one of `id`, \
         `detector`, `enabled`, `title`, `description`, `severity`, `technique`, \
         `data_sources`, `mitigations`, `scope`, `params`"
    );
    assert_eq!(
        error("\n\nrules:\n  - id: X9\n    detector: teleport\n    title: t\n    severity: low\n"),
        "/etc/jobwatch/rules.yaml:4: rule X9: unknown detector \"teleport\" (one of: \
         new_workload, host_access, runs_as_root, drift, fileless, download_and_run, \
         persistence_write, cronjob_baseline)"
    );
    assert_eq!(
        error("rules:\n  - id: JW099\n    severity: low\n"),
        "/etc/jobwatch/rules.yaml:2: rule JW099: no such rule to change; a new rule needs a \
         detector (one of: new_workload, host_access, runs_as_root, drift, fileless, \
         download_and_run, persistence_write, cronjob_baseline)"
    );
    assert_eq!(
        error("rules:\n  - id: JW008\n    params:\n      learning_run: 3\n"),
        "/etc/jobwatch/rules.yaml:2: rule JW008: params: unknown field `learning_run`, expected \
         one of `learning_runs`, `max_items`, `max_cronjobs`"
    );
    assert_eq!(
        error("rules:\n  - id: N1\n    detector: drift\n    severity: low\n"),
        "/etc/jobwatch/rules.yaml:2: rule N1: missing title"
    );
    assert_eq!(
        error("rules:\n  - id: JW004\n    detector: fileless\n"),
        "/etc/jobwatch/rules.yaml:2: rule JW004: the detector of a shipped rule cannot change \
         (\"drift\" -> \"fileless\"); add a rule with a new id instead"
    );
    assert_eq!(
        error("exceptions:\n  - rules: [JW404]\n"),
        "/etc/jobwatch/rules.yaml:2: exception 1: no rule \"JW404\""
    );
    assert_eq!(
        error("rules: [\n"),
        "/etc/jobwatch/rules.yaml:2: did not find expected node content"
    );
    assert_eq!(
        error(
            "rules:\n  - id: A\n    detector: drift\n    title: a\n    severity: low\n  - id: A\n    detector: drift\n    title: a\n    severity: low\n"
        ),
        "/etc/jobwatch/rules.yaml:2: rule A is defined twice"
    );
    assert_eq!(
        error("rules:\n  - id: JW004\n    params: {x: 1}\n"),
        "/etc/jobwatch/rules.yaml:2: rule JW004: params: detector drift takes no params"
    );
}

#[test]
fn an_unreadable_file_is_named() {
    let e = load(Some(Path::new("/nonexistent/rules.yaml"))).expect_err("missing");
    assert_eq!(e.file, Path::new("/nonexistent/rules.yaml"));
    assert_eq!(e.line, None);
    assert!(e.reason.starts_with("cannot read the rules file: "), "{e}");
}
