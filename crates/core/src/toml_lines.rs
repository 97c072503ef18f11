//! Line numbers in kbz.toml text: which table a header names, which key a line sets, and
//! where a key is set, so diagnostics can point at `file:line`.

/// The table a header `[name]` or `[[name]]` line names.
pub(crate) fn header_name(t: &str) -> Option<String> {
    if !t.starts_with('[') {
        return None;
    }
    let inner = t.trim_start_matches('[');
    let name = inner.split(']').next().unwrap_or("");
    Some(name.trim().replace([' ', '"'], ""))
}

/// The key a `key = value` line sets (quotes removed), if it is one.
pub(crate) fn line_key(line: &str) -> Option<String> {
    let t = line.trim();
    if t.is_empty() || t.starts_with('#') || t.starts_with('[') {
        return None;
    }
    let (k, _) = t.split_once('=')?;
    Some(k.trim().replace([' ', '"', '\''], ""))
}

/// The table whose section holds `line` (empty at the top level).
pub(crate) fn table_at(text: &str, line: usize) -> String {
    let mut current = String::new();
    for l in text.lines().take(line) {
        if let Some(h) = header_name(l.trim()) {
            current = h;
        }
    }
    current
}

/// The 1-based line where `key` of `table` is set (`""` for the top level): in a `[table]`
/// section, as a dotted `table.key` at the top level, or else the line of the table itself.
pub fn key_line(text: &str, table: &str, key: &str) -> Option<usize> {
    let dotted = format!("{table}.{key}");
    let mut current = String::new();
    let mut table_line = None;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if let Some(h) = header_name(t) {
            if h == table && table_line.is_none() {
                table_line = Some(i + 1);
            }
            current = h;
            continue;
        }
        let Some(k) = line_key(t) else { continue };
        if (current == table && k == key) || (current.is_empty() && k == dotted) {
            return Some(i + 1);
        }
        if current.is_empty() && k == table && table_line.is_none() {
            table_line = Some(i + 1);
        }
    }
    table_line
}
