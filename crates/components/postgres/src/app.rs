//! The application role and database of `[postgres] app_user` / `app_database`: what clients
//! log in as (through the VIP or a member's address) instead of the superuser, which is
//! reachable only over the local socket (peer authentication).
//!
//! The cluster step creates both on the leader when they are missing, through one `psql`
//! session as the `postgres` OS user over the local socket: the SQL, password included,
//! travels on stdin (never on a command line), the session turns statement logging off
//! first so a failing statement does not put the password into the server log, and
//! psql's command tags (`CREATE ROLE`, `CREATE DATABASE`) tell what was created, so a
//! converged cluster reports no change. An existing role keeps its password.

use kbz_core::component::{ClusterChange, ClusterChangeKind};
use kbz_core::Context;

/// Secret: password of the application role.
pub const APP_PASSWORD: &str = "postgres_app_password";

/// The script that reads [`setup_sql`] on stdin (run on the leader).
pub const SETUP_SCRIPT: &str =
    "cd / && runuser -u postgres -- psql -XAt -v ON_ERROR_STOP=1 -d postgres -f - # kbz app role";

/// `s` as a single-quoted psql meta-command argument (psql processes backslash escapes
/// and doubled quotes inside one).
fn psql_arg(s: &str) -> String {
    let mut out = String::from("'");
    for c in s.chars() {
        match c {
            '\'' => out.push_str("''"),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The SQL (for `psql -f -`) creating the role `user` (login, no other privilege) with
/// `password` and the database `db` owned by it, each only when missing; CONNECT on the new
/// database is revoked from PUBLIC, so other roles need a grant.
pub fn setup_sql(user: &str, db: &str, password: &str) -> String {
    format!(
        "SET log_statement = 'none';\n\
         SET log_min_error_statement = 'panic';\n\
         SET log_min_duration_statement = -1;\n\
         \\set kbz_user {u}\n\
         \\set kbz_db {d}\n\
         \\set kbz_pw {p}\n\
         SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION PASSWORD %L', :'kbz_user', :'kbz_pw') \
         WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = :'kbz_user') \\gexec\n\
         SELECT format('CREATE DATABASE %I OWNER %I', :'kbz_db', :'kbz_user'), \
         format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', :'kbz_db') \
         WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = :'kbz_db') \\gexec\n",
        u = psql_arg(user),
        d = psql_arg(db),
        p = psql_arg(password),
    )
}

/// The stdin of [`SETUP_SCRIPT`] for this cluster (`Err`: the secret is missing).
pub fn setup_input(ctx: &Context) -> Result<String, kbz_core::ComponentError> {
    let pg = &ctx.config.postgres;
    Ok(setup_sql(
        &pg.app_user,
        &pg.app_database,
        ctx.secret(APP_PASSWORD)?.expose(),
    ))
}

/// What psql's output says was created on `host` (its command tags).
pub fn changes(ctx: &Context, host: &str, stdout: &str) -> Vec<ClusterChange> {
    let pg = &ctx.config.postgres;
    let mut out = Vec::new();
    for line in stdout.lines().map(str::trim) {
        let detail = match line {
            "CREATE ROLE" => format!(
                "application role {} (login, password from the secrets file)",
                pg.app_user
            ),
            "CREATE DATABASE" => format!(
                "application database {} owned by {}",
                pg.app_database, pg.app_user
            ),
            _ => continue,
        };
        out.push(ClusterChange::new(ClusterChangeKind::Create, host, detail));
    }
    out
}

/// The application role's pg_hba lines for `nets`: its own database only.
pub fn hba(ctx: &Context, nets: &[String]) -> Vec<String> {
    let pg = &ctx.config.postgres;
    nets.iter()
        .map(|n| format!("host {} {} {n} scram-sha-256", pg.app_database, pg.app_user))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psql_arguments_escape_quotes_backslashes_and_newlines() {
        assert_eq!(psql_arg("abc"), "'abc'");
        assert_eq!(psql_arg("a'b\\c\nd"), "'a''b\\\\c\\nd'");
    }

    #[test]
    fn setup_creates_only_what_is_missing_with_logging_off_first() {
        let sql = setup_sql("shop", "shopdb", "pw");
        let off = sql.find("log_min_error_statement = 'panic'").expect("off");
        let pw = sql.find("\\set kbz_pw 'pw'").expect("pw");
        assert!(off < pw, "{sql}");
        assert!(sql.contains("WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_roles"));
        assert!(sql.contains("WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_database"));
        assert!(sql.contains("NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"));
        // The password appears once, as a psql variable.
        assert_eq!(sql.matches("'pw'").count(), 1, "{sql}");
        assert!(!SETUP_SCRIPT.contains("pw"));
    }
}
