//! Results: medians and spreads, markdown tables and JSON (written by hand: xtask is a
//! build-dependency of the sensor and stays free of serde).

use std::{fmt::Write as _, path::Path};

use anyhow::{Context as _, Result};

/// A JSON value.
#[derive(Clone, Debug)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn obj<const N: usize>(fields: [(&str, Json); N]) -> Json {
        Json::Obj(
            fields
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        )
    }

    pub fn str(s: impl Into<String>) -> Json {
        Json::Str(s.into())
    }

    pub fn num(v: f64) -> Json {
        if v.is_finite() {
            Json::Num(v)
        } else {
            Json::Null
        }
    }

    fn write(&self, out: &mut String) {
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(v) => {
                if v.fract() == 0.0 && v.abs() < 1e15 {
                    let _ = write!(out, "{}", *v as i64);
                } else {
                    let _ = write!(out, "{v:.6}");
                }
            }
            Json::Str(s) => {
                out.push('"');
                for c in s.chars() {
                    match c {
                        '"' => out.push_str("\\\""),
                        '\\' => out.push_str("\\\\"),
                        '\n' => out.push_str("\\n"),
                        c if (c as u32) < 0x20 => {
                            let _ = write!(out, "\\u{:04x}", c as u32);
                        }
                        c => out.push(c),
                    }
                }
                out.push('"');
            }
            Json::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out);
                }
                out.push(']');
            }
            Json::Obj(fields) => {
                out.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    Json::Str(k.clone()).write(out);
                    out.push(':');
                    v.write(out);
                }
                out.push('}');
            }
        }
    }
}

impl std::fmt::Display for Json {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::new();
        self.write(&mut s);
        f.write_str(&s)
    }
}

/// Median, minimum and maximum of a series (NaN for an empty one).
#[derive(Clone, Copy, Debug)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        v.sort_by(f64::total_cmp);
        let median = match v.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        };
        Spread {
            median,
            min: v.first().copied().unwrap_or(f64::NAN),
            max: v.last().copied().unwrap_or(f64::NAN),
            n: v.len(),
        }
    }

    pub fn json(&self) -> Json {
        Json::obj([
            ("median", Json::num(self.median)),
            ("min", Json::num(self.min)),
            ("max", Json::num(self.max)),
            ("n", Json::num(self.n as f64)),
        ])
    }

    /// `median (min-max)` with `digits` decimals.
    pub fn show(&self, digits: usize) -> String {
        if self.n == 0 {
            return "n/a".into();
        }
        if self.n == 1 {
            return fmt(self.median, digits);
        }
        format!(
            "{} ({}–{})",
            fmt(self.median, digits),
            fmt(self.min, digits),
            fmt(self.max, digits)
        )
    }
}

/// A number with `digits` decimals, thousands separated; `n/a` when not finite.
pub fn fmt(v: f64, digits: usize) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let s = format!("{:.*}", digits, v.abs());
    let (int, frac) = s.split_once('.').map_or((s.as_str(), ""), |(i, f)| (i, f));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    let sign = if v < 0.0 { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{grouped}")
    } else {
        format!("{sign}{grouped}.{frac}")
    }
}

/// A markdown table.
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn markdown(&self) -> String {
        let mut s = format!("| {} |\n|", self.headers.join(" | "));
        for _ in &self.headers {
            s.push_str("---|");
        }
        s.push('\n');
        for r in &self.rows {
            let _ = writeln!(s, "| {} |", r.join(" | "));
        }
        s
    }
}

/// One benchmark's results.
pub struct Section {
    /// File name stem (`exec`, `files`, ...).
    pub name: &'static str,
    pub markdown: String,
    pub json: Json,
    /// The benchmark's "ahead" lines: (what, holds).
    pub verdicts: Vec<(String, bool)>,
}

impl Section {
    /// The verdict lines as markdown.
    pub fn verdict_markdown(&self) -> String {
        let mut s = String::new();
        for (what, holds) in &self.verdicts {
            let _ = writeln!(
                s,
                "- {} {what}",
                if *holds {
                    "**ahead:**"
                } else {
                    "**NOT ahead:**"
                }
            );
        }
        s
    }
}

/// The "ahead" lines as JSON.
pub fn ahead_json(verdicts: &[(String, bool)]) -> Json {
    Json::Arr(
        verdicts
            .iter()
            .map(|(w, h)| Json::obj([("what", Json::str(w.clone())), ("holds", Json::Bool(*h))]))
            .collect(),
    )
}

/// Writes `<dir>/<name>.md` and `<dir>/<name>.json`.
pub fn write(dir: &Path, name: &str, markdown: &str, json: &Json) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let md = dir.join(format!("{name}.md"));
    std::fs::write(&md, markdown).with_context(|| format!("writing {}", md.display()))?;
    let js = dir.join(format!("{name}.json"));
    std::fs::write(&js, format!("{json}\n")).with_context(|| format!("writing {}", js.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_and_format() {
        let s = Spread::of(&[3.0, 1.0, 2.0, f64::NAN]);
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(Spread::of(&[1.0, 2.0]).median, 1.5);
        assert_eq!(fmt(1234567.891, 1), "1,234,567.9");
        assert_eq!(fmt(-999.0, 0), "-999");
    }

    #[test]
    fn json_escapes() {
        let j = Json::obj([
            ("a", Json::str("x\"y\n")),
            (
                "b",
                Json::Arr(vec![Json::num(1.0), Json::num(0.5), Json::Null]),
            ),
        ]);
        assert_eq!(j.to_string(), r#"{"a":"x\"y\n","b":[1,0.500000,null]}"#);
    }
}
