//! Handlebars rendering for component config templates: strict (a missing variable is an
//! error, not an empty string) and without HTML escaping (these are config files).
//!
//! A template is parsed once per process and kept (keyed by its name and a hash of its
//! source): planning a fleet renders the same few dozen templates for every host, and
//! parsing was most of the planning time (`cargo xtask bench fleet`). At most
//! [`CACHED_TEMPLATES`] are kept; beyond that, templates are parsed on every call.

use handlebars::{Handlebars, Template};
use serde::Serialize;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{OnceLock, RwLock};

use crate::error::ComponentError;

/// How many parsed templates the process keeps.
pub const CACHED_TEMPLATES: usize = 512;

fn registry() -> &'static RwLock<Handlebars<'static>> {
    static REGISTRY: OnceLock<RwLock<Handlebars<'static>>> = OnceLock::new();
    REGISTRY.get_or_init(|| RwLock::new(handlebars()))
}

fn handlebars() -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    hb
}

/// Renders one template with `data`. `name` appears in errors (`haproxy.cfg.hbs`).
pub fn render<T: Serialize>(name: &str, source: &str, data: &T) -> Result<String, ComponentError> {
    let mut h = DefaultHasher::new();
    source.hash(&mut h);
    let key = format!("{name}#{:016x}", h.finish());
    // Messages name the template as the caller did, not by its cache key.
    let err = |reason: String| ComponentError::Render {
        template: name.to_string(),
        reason: reason.replace(&key, name),
    };
    // A poisoned lock only means another thread panicked while holding it; the registry
    // itself is still consistent (registering is one insert).
    {
        let reg = registry().read().unwrap_or_else(|e| e.into_inner());
        if reg.has_template(&key) {
            return reg.render(&key, data).map_err(|e| err(e.to_string()));
        }
    }
    let template = Template::compile(source).map_err(|e| err(e.to_string()))?;
    let mut reg = registry().write().unwrap_or_else(|e| e.into_inner());
    if reg.get_templates().len() >= CACHED_TEMPLATES {
        drop(reg);
        let mut hb = handlebars();
        hb.register_template(&key, template);
        return hb.render(&key, data).map_err(|e| err(e.to_string()));
    }
    reg.register_template(&key, template);
    reg.render(&key, data).map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_without_escaping() {
        let out = render(
            "t",
            "a={{a}} b={{#each b}}{{this}},{{/each}}",
            &serde_json::json!({"a": "<x&y>", "b": [1, 2]}),
        )
        .expect("render");
        assert_eq!(out, "a=<x&y> b=1,2,");
    }

    #[test]
    fn missing_variable_is_an_error() {
        let e = render("t.hbs", "{{nope}}", &serde_json::json!({})).expect_err("strict");
        assert!(e.to_string().contains("t.hbs"));
        assert!(!e.to_string().contains("t.hbs#"), "{e}");
    }

    /// Two sources under one name are two templates: the cache never serves the other one.
    #[test]
    fn one_name_with_two_sources_renders_each_source() {
        let d = serde_json::json!({"a": 1});
        assert_eq!(render("same", "x={{a}}", &d).expect("first"), "x=1");
        assert_eq!(render("same", "y={{a}}", &d).expect("second"), "y=1");
        assert_eq!(render("same", "x={{a}}", &d).expect("cached"), "x=1");
    }

    #[test]
    fn a_template_that_does_not_parse_is_an_error_naming_it() {
        let e = render("broken.hbs", "{{#if a}}", &serde_json::json!({"a": 1}))
            .expect_err("unclosed block");
        assert!(e.to_string().contains("broken.hbs"), "{e}");
    }
}
