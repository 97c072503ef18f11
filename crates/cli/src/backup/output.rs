//! kbz-backup's output: tables for people, one JSON document per command with `--json`
//! (diagnostics as `errors`, like every kbz binary).

use kbz_core::backup::repo::human;
use kbz_core::backup::{Manifest, RestorePlan, Restored};
use kbz_errors::Diagnostic;
use serde_json::json;

use crate::ui;

fn when(m: &Manifest) -> String {
    m.time.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// What was inside, short: `key_count=6 revision=42`.
pub fn contents(m: &Manifest) -> String {
    m.contents
        .iter()
        .filter(|(k, _)| k.as_str() != "etcd_hash" && k.as_str() != "total_size")
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn errors_json(errors: &[Diagnostic]) -> Vec<serde_json::Value> {
    errors.iter().map(|d| d.render_json()).collect()
}

/// `run`: the stored backups and the failures.
pub fn print_backups(done: &[Manifest], errors: &[Diagnostic], json: bool) {
    if json {
        crate::outln!(
            "{}",
            json!({ "backups": done, "errors": errors_json(errors) })
        );
        return;
    }
    if !done.is_empty() {
        let rows: Vec<Vec<String>> = done
            .iter()
            .map(|m| {
                vec![
                    m.component.clone(),
                    m.id.clone(),
                    m.kind.to_string(),
                    m.source_host.clone(),
                    human(m.size_bytes),
                    format!("{:.1}s", m.duration_ms as f64 / 1000.0),
                    contents(m),
                ]
            })
            .collect();
        ui::table(
            &[
                "component",
                "id",
                "kind",
                "from",
                "size",
                "took",
                "contents",
            ],
            &rows,
        );
    }
    ui::diagnostics(errors, false);
}

/// `list`: every backup, oldest first per component; `gone` are those a prune removes.
pub fn print_list(ms: &[Manifest], gone: &[String], host: &str, dir: &str, json: bool) {
    if json {
        let items: Vec<serde_json::Value> = ms
            .iter()
            .map(|m| {
                let mut v = serde_json::to_value(m).unwrap_or_default();
                v["pruned_next"] = json!(gone.contains(&m.id));
                v
            })
            .collect();
        crate::outln!(
            "{}",
            json!({ "repository": format!("{host}:{dir}"), "backups": items })
        );
        return;
    }
    if ms.is_empty() {
        crate::outln!("no backups in {host}:{dir} yet; take one with `kbz-backup run`");
        return;
    }
    let rows: Vec<Vec<String>> = ms
        .iter()
        .map(|m| {
            vec![
                m.component.clone(),
                m.id.clone(),
                m.kind.to_string(),
                when(m),
                human(m.size_bytes),
                m.stored
                    .as_ref()
                    .map(|s| {
                        if s.encrypted {
                            "age".to_string()
                        } else {
                            "plain".into()
                        }
                    })
                    .unwrap_or_else(|| "tool's own".into()),
                if gone.contains(&m.id) {
                    "next prune".into()
                } else {
                    "kept".into()
                },
                contents(m),
            ]
        })
        .collect();
    ui::table(
        &[
            "component",
            "id",
            "kind",
            "time",
            "size",
            "stored",
            "retention",
            "contents",
        ],
        &rows,
    );
    crate::outln!("{} backup(s) in {host}:{dir}", ms.len());
}

/// `verify`: one row per backup checked.
pub fn print_verify(rows: &[(String, Result<String, Diagnostic>)], json: bool) {
    let bad: Vec<Diagnostic> = rows.iter().filter_map(|(_, r)| r.clone().err()).collect();
    if json {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|(id, r)| match r {
                Ok(d) => json!({ "id": id, "ok": true, "detail": d }),
                Err(d) => json!({ "id": id, "ok": false, "error": d.render_json() }),
            })
            .collect();
        crate::outln!(
            "{}",
            json!({ "verified": items, "errors": errors_json(&bad) })
        );
        return;
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|(id, r)| match r {
            Ok(d) => vec![id.clone(), "ok".into(), d.clone()],
            Err(d) => vec![id.clone(), format!("FAILED {}", d.code), d.message.clone()],
        })
        .collect();
    if table.is_empty() {
        crate::outln!("nothing to verify: no backups yet");
    } else {
        ui::table(&["backup", "status", "detail"], &table);
    }
    ui::diagnostics(&bad, false);
}

/// One drill's row: component, what it found (or why it failed), total milliseconds.
pub type DrillRow = (
    String,
    Result<(Manifest, kbz_core::backup::Drilled), Diagnostic>,
    u64,
);

/// `drill`: one row per component.
pub fn print_drills(rows: &[DrillRow], json: bool) {
    let bad: Vec<Diagnostic> = rows
        .iter()
        .filter_map(|(_, r, _)| r.clone().err())
        .collect();
    if json {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .map(|(c, r, ms)| match r {
                Ok((m, d)) => json!({ "component": c, "ok": true, "id": m.id, "host": d.host, "restore_ms": d.restore_ms, "total_ms": ms, "compared": d.compared }),
                Err(d) => json!({ "component": c, "ok": false, "total_ms": ms, "error": d.render_json() }),
            })
            .collect();
        crate::outln!(
            "{}",
            json!({ "drills": items, "errors": errors_json(&bad) })
        );
        return;
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|(c, r, ms)| match r {
            Ok((m, d)) => vec![
                c.clone(),
                "passed".into(),
                m.id.clone(),
                format!("{:.1}s", d.restore_ms as f64 / 1000.0),
                format!("{:.1}s", *ms as f64 / 1000.0),
                d.compared
                    .iter()
                    .map(|x| format!("{} {}", x.what, x.got))
                    .collect::<Vec<_>>()
                    .join(", "),
            ],
            Err(d) => vec![
                c.clone(),
                format!("FAILED {}", d.code),
                String::new(),
                String::new(),
                format!("{:.1}s", *ms as f64 / 1000.0),
                d.message.clone(),
            ],
        })
        .collect();
    ui::table(
        &[
            "component",
            "drill",
            "backup",
            "restore",
            "total",
            "compared",
        ],
        &table,
    );
    ui::diagnostics(&bad, false);
}

/// `prune`.
pub fn print_prune(removed: &[String], kept: usize, errors: &[Diagnostic], json: bool) {
    if json {
        crate::outln!(
            "{}",
            json!({ "removed": removed, "kept": kept, "errors": errors_json(errors) })
        );
        return;
    }
    for id in removed {
        crate::outln!("removed {id}");
    }
    crate::outln!("{} removed, {kept} kept", removed.len());
    ui::diagnostics(errors, false);
}

/// `restore --dry-run`: every step.
pub fn print_restore_plan(m: &Manifest, plan: &RestorePlan, json: bool) {
    if json {
        crate::outln!("{}", json!({ "dry_run": true, "backup": m, "plan": plan }));
        return;
    }
    crate::outln!(
        "restore of {} from {} ({}, {}), dry-run: nothing changes",
        m.component,
        m.id,
        when(m),
        human(m.size_bytes)
    );
    if plan.running {
        let stops = plan
            .stops
            .iter()
            .map(|(h, s)| format!("{s} on {h}"))
            .collect::<Vec<_>>()
            .join(", ");
        crate::outln!(
            "{} is running and healthy: the restore needs --force and stops {stops}",
            m.component
        );
    }
    for (i, s) in plan.steps.iter().enumerate() {
        crate::outln!("{:>3}. {s}", i + 1);
    }
}

/// `restore`: what was restored.
pub fn print_restored(m: &Manifest, r: &Restored, ms: u64, json: bool) {
    if json {
        crate::outln!(
            "{}",
            json!({ "restored": m.id, "component": m.component, "ms": ms, "detail": r.detail, "contents": r.contents })
        );
        return;
    }
    crate::outln!(
        "restored {} from {} in {:.1}s: {}",
        m.component,
        m.id,
        ms as f64 / 1000.0,
        r.detail
    );
}
