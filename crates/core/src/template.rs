//! Handlebars rendering for component config templates: strict (a missing variable is an
//! error, not an empty string) and without HTML escaping (these are config files).

use handlebars::Handlebars;
use serde::Serialize;

use crate::error::ComponentError;

/// Renders one template with `data`. `name` appears in errors (`haproxy.cfg.hbs`).
pub fn render<T: Serialize>(name: &str, source: &str, data: &T) -> Result<String, ComponentError> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_escape_fn(handlebars::no_escape);
    hb.render_template(source, data)
        .map_err(|e| ComponentError::Render {
            template: name.to_string(),
            reason: e.to_string(),
        })
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
    }
}
