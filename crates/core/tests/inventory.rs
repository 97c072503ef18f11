//! Bad-input tests for servers.tsv and kbz.toml: every case asserts the E-code and the
//! `file:line` of each diagnostic, and that every problem is reported at once.

use kbz_core::config::{AddrRange, Config};
use kbz_core::inventory::{suggest_role, Inventory, Role};
use kbz_core::validate::{load_and_validate, validate, validate_with_source};
use kbz_errors::{Code, Diagnostic};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

#[path = "inventory/hostile.rs"]
mod hostile;

const INV: &str = "servers.tsv";
const CFG: &str = "kbz.toml";

/// `E004 servers.tsv:5` for each diagnostic, in order.
fn spots(diags: &[Diagnostic]) -> Vec<String> {
    diags
        .iter()
        .map(|d| match &d.location {
            Some(loc) => format!("{} {loc}", d.code),
            None => format!("{} -", d.code),
        })
        .collect()
}

fn inv_err(text: &str) -> Vec<Diagnostic> {
    match Inventory::parse(INV, text.as_bytes()) {
        Ok(inv) => panic!(
            "expected errors, parsed {} hosts from:\n{text}",
            inv.hosts.len()
        ),
        Err(d) => d,
    }
}

fn inv_ok(text: &str) -> Inventory {
    match Inventory::parse(INV, text.as_bytes()) {
        Ok(inv) => inv,
        Err(d) => panic!("unexpected errors: {:#?}", spots(&d)),
    }
}

fn cfg_err(text: &str) -> Vec<Diagnostic> {
    match Config::parse(CFG, text) {
        Ok(_) => panic!("expected errors from:\n{text}"),
        Err(d) => d,
    }
}

fn cfg_ok(text: &str) -> Config {
    match Config::parse(CFG, text) {
        Ok(c) => c,
        Err(d) => panic!("unexpected errors: {:#?}", spots(&d)),
    }
}

fn one(diags: &[Diagnostic]) -> &Diagnostic {
    assert_eq!(diags.len(), 1, "{:#?}", diags);
    &diags[0]
}

fn hint(d: &Diagnostic) -> &str {
    d.hint.as_deref().unwrap_or("")
}

/// Three db hosts (quorum-valid), lines 1-3.
const DB: &str = "db1\t192.0.2.21\tetcd,postgres,redis\n\
                  db2\t192.0.2.22\tetcd,postgres,redis\n\
                  db3\t192.0.2.23\tetcd,postgres,redis\n";

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

// ---------------------------------------------------------------- files

#[test]
fn missing_inventory_is_e001_with_fix() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("servers.tsv");
    let d = Inventory::load(&path).expect_err("missing");
    let d = one(&d);
    assert_eq!(d.code, Code::E001);
    assert_eq!(
        spots(std::slice::from_ref(d)),
        [format!("E001 {}", path.display())]
    );
    assert!(d.message.contains("not found"), "{d}");
}

#[test]
fn missing_config_is_e001_unless_defaults_are_allowed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kbz.toml");
    let d = Config::load(&path).expect_err("missing");
    assert_eq!(spots(&d), [format!("E001 {}", path.display())]);
    assert!(hint(&d[0]).contains("examples/kbz.toml"), "{}", d[0]);
    assert_eq!(
        Config::load_or_default(&path).expect("defaults"),
        Config::default()
    );
}

#[test]
fn empty_file_is_e003() {
    for text in ["", "\n\n", "\u{feff}", "  \r\n"] {
        let d = inv_err(text);
        assert_eq!(spots(&d), ["E003 servers.tsv"], "{text:?}");
        assert!(d[0].message.contains("empty"), "{}", d[0]);
    }
}

#[test]
fn only_comments_and_header_is_e003() {
    let d = inv_err("# fleet\nhostname\tip\troles\n\n   # indented comment\n");
    assert_eq!(spots(&d), ["E003 servers.tsv"]);
    assert!(d[0].message.contains("no host lines"), "{}", d[0]);
}

// ---------------------------------------------------------------- columns and bytes

#[test]
fn too_few_columns_is_e002() {
    let d = inv_err(&format!("{DB}web1\t192.0.2.30\n"));
    assert_eq!(spots(&d), ["E002 servers.tsv:4"]);
    assert!(d[0].message.contains("found 2"), "{}", d[0]);
}

#[test]
fn too_many_columns_is_e002() {
    let d = inv_err(&format!(
        "{DB}web1\t192.0.2.30\tlb\troot\t22\tzone=a\textra\n"
    ));
    assert_eq!(spots(&d), ["E002 servers.tsv:4"]);
    assert!(d[0].message.contains("found 7 columns"), "{}", d[0]);
}

#[test]
fn double_tab_making_a_required_column_empty_is_e002() {
    let d = inv_err(&format!("{DB}web1\t\t192.0.2.30\tlb\n"));
    assert_eq!(spots(&d), ["E002 servers.tsv:4"]);
    assert!(d[0].message.contains("`ip` column is empty"), "{}", d[0]);
    assert!(hint(&d[0]).contains("two tabs"), "{}", d[0]);
}

#[test]
fn spaces_instead_of_tabs_is_e002() {
    let d = inv_err(&format!("{DB}web1   192.0.2.30   lb\n"));
    assert_eq!(spots(&d), ["E002 servers.tsv:4"]);
    assert_eq!(d[0].message, "fields are separated by spaces; use tabs");
    assert!(hint(&d[0]).contains("sed -i"), "{}", d[0]);
}

#[test]
fn spaces_inside_the_roles_list_is_e002_and_other_columns_still_checked() {
    let d = inv_err(&format!("{DB}web1\t192.0.2.999\tlb, minio\n"));
    assert_eq!(spots(&d), ["E002 servers.tsv:4", "E005 servers.tsv:4"]);
    assert!(d[0].message.contains("contains spaces"), "{}", d[0]);
    assert!(d[1].message.contains("192.0.2.999"), "{}", d[1]);
}

#[test]
fn non_utf8_bytes_are_e002_with_the_line() {
    let mut bytes = DB.as_bytes().to_vec();
    bytes.extend_from_slice(b"caf\xe9\t192.0.2.30\tlb\n");
    bytes.extend_from_slice(b"# commentaire \xe9t\xe9\n");
    bytes.extend_from_slice(b"web2\t192.0.2.31\tlbb\n");
    let d = Inventory::parse(INV, &bytes).expect_err("latin-1");
    assert_eq!(
        spots(&d),
        [
            "E002 servers.tsv:4",
            "E002 servers.tsv:5",
            "E006 servers.tsv:6"
        ]
    );
    assert!(d[0].message.contains("0xE9 at column 4"), "{}", d[0]);
    assert!(hint(&d[0]).contains("iconv"), "{}", d[0]);
}

#[test]
fn bom_crlf_header_and_comments_are_accepted() {
    let text = "\u{feff}# fleet\r\nhostname\tip\troles\r\n\r\ndb1\t192.0.2.21\tetcd,postgres,redis # primary-ish\r\n\
                db2\t192.0.2.22\tetcd,postgres,redis\t# trailing\r\ndb3\t192.0.2.23\tetcd,postgres,redis\r\n";
    let inv = inv_ok(text);
    assert_eq!(inv.hosts.len(), 3);
    assert_eq!(inv.hosts[0].hostname, "db1");
    assert_eq!(inv.hosts[0].line, 4);
    assert_eq!(inv.hosts[2].line, 6);
    assert!(inv.hosts[0].has(Role::Redis));
    assert!(inv.check_quorum().is_empty());
}

#[test]
fn header_row_only_counts_as_the_first_content_line() {
    // A later line named `hostname` is a host line, and an invalid one here (no roles).
    let d = inv_err(&format!("{DB}hostname\tip\troles\n"));
    assert_eq!(spots(&d), ["E005 servers.tsv:4", "E006 servers.tsv:4"]);
}

#[test]
fn optional_columns_default_and_parse() {
    let inv = inv_ok(
        "a1\t192.0.2.1\tlb\n\
         a2\t192.0.2.2\tlb\t\t\tzone=a,rack=r1\n\
         a3\t192.0.2.3\tlb\tdebian\t2222\tnote=x.y,empty=\n",
    );
    let [a1, a2, a3] = &inv.hosts[..] else {
        panic!("3 hosts")
    };
    assert_eq!((a1.ssh_user.as_str(), a1.ssh_port), ("root", 22));
    assert!(a1.labels.is_empty());
    assert_eq!((a2.ssh_user.as_str(), a2.ssh_port), ("root", 22));
    assert_eq!(a2.labels.get("rack").map(String::as_str), Some("r1"));
    assert_eq!((a3.ssh_user.as_str(), a3.ssh_port), ("debian", 2222));
    assert_eq!(a3.labels.get("note").map(String::as_str), Some("x.y"));
    assert_eq!(a3.labels.get("empty").map(String::as_str), Some(""));
}

// ---------------------------------------------------------------- field values

#[test]
fn invalid_ip_is_e005_with_specific_hints() {
    let d = inv_err(&format!(
        "{DB}w1\t192.0.2.300\tlb\nw2\t192.0.2.5/24\tlb\nw3\t[2001:db8::5]\tlb\nw4\tw4.example.com\tlb\nw5\t0.0.0.0\tlb\n"
    ));
    assert_eq!(
        spots(&d),
        [
            "E005 servers.tsv:4",
            "E005 servers.tsv:5",
            "E005 servers.tsv:6",
            "E005 servers.tsv:7",
            "E005 servers.tsv:8"
        ]
    );
    assert!(hint(&d[1]).contains("`192.0.2.5`"), "{}", d[1]);
    assert!(hint(&d[2]).contains("without brackets"), "{}", d[2]);
    assert!(hint(&d[3]).contains("not a name"), "{}", d[3]);
    assert!(d[4].message.contains("not a host address"), "{}", d[4]);
    assert_eq!(d[0].host.as_deref(), Some("w1"));
}

#[test]
fn ipv6_is_accepted() {
    let inv = inv_ok("v1\t2001:db8::11\tlb\nv2\t2001:db8::12\tlb\n");
    assert_eq!(
        inv.hosts[0].ip,
        "2001:db8::11".parse::<IpAddr>().expect("ip")
    );
}

#[test]
fn invalid_hostnames_are_e005() {
    let long = "a".repeat(64);
    let d = inv_err(&format!(
        "DB1\t192.0.2.1\tlb\ndb_2\t192.0.2.2\tlb\n-db3\t192.0.2.3\tlb\n{long}\t192.0.2.4\tlb\ndb5..x\t192.0.2.5\tlb\n\
         ok.example.com\t192.0.2.6\tlb\n192.0.2.7\tdb7\tlb\n"
    ));
    assert_eq!(
        spots(&d),
        [
            "E005 servers.tsv:1",
            "E005 servers.tsv:2",
            "E005 servers.tsv:3",
            "E005 servers.tsv:4",
            "E005 servers.tsv:5",
            "E005 servers.tsv:7",
            "E005 servers.tsv:7"
        ]
    );
    assert!(hint(&d[0]).contains("`db1`"), "{}", d[0]);
    assert!(d[5].message.contains("is an IP address"), "{}", d[5]);
    assert!(d[3].message.contains("at most 63"), "{}", d[3]);
}

#[test]
fn unknown_role_is_e006_with_the_nearest_role() {
    let d = inv_err(
        "db1\t192.0.2.21\tetcd,postgress,redis\ndb2\t192.0.2.22\tk8s_master\ndb3\t192.0.2.23\tzzzz\n",
    );
    assert_eq!(
        spots(&d),
        [
            "E006 servers.tsv:1",
            "E006 servers.tsv:2",
            "E006 servers.tsv:3"
        ]
    );
    assert_eq!(d[0].message, "unknown role `postgress`");
    assert!(
        hint(&d[0]).starts_with("did you mean `postgres`?"),
        "{}",
        d[0]
    );
    assert!(
        hint(&d[1]).starts_with("did you mean `k8s-master`?"),
        "{}",
        d[1]
    );
    assert!(hint(&d[2]).starts_with("valid roles: lb, etcd"), "{}", d[2]);
    assert_eq!(d[0].host.as_deref(), Some("db1"));
    assert_eq!(suggest_role("haproxy"), Some(Role::Lb));
    assert_eq!(suggest_role("rabitmq"), Some(Role::Rabbitmq));
}

#[test]
fn empty_role_entry_is_e005() {
    let d = inv_err("db1\t192.0.2.21\tetcd,,redis\ndb2\t192.0.2.22\tlb,\n");
    assert_eq!(spots(&d), ["E005 servers.tsv:1", "E005 servers.tsv:2"]);
}

#[test]
fn bad_ssh_ports_are_e005() {
    let d = inv_err(&format!(
        "{DB}w1\t192.0.2.31\tlb\troot\t0\nw2\t192.0.2.32\tlb\troot\t70000\nw3\t192.0.2.33\tlb\troot\tabc\n\
         w4\t192.0.2.34\tlb\troot\t-1\nw5\t192.0.2.35\tlb\troot\t65535\n"
    ));
    assert_eq!(
        spots(&d),
        [
            "E005 servers.tsv:4",
            "E005 servers.tsv:5",
            "E005 servers.tsv:6",
            "E005 servers.tsv:7"
        ]
    );
    assert!(d[0].message.contains("out of range"), "{}", d[0]);
    assert!(d[1].message.contains("out of range"), "{}", d[1]);
    assert!(d[2].message.contains("not a number"), "{}", d[2]);
}

#[test]
fn bad_ssh_user_is_e005() {
    let d = inv_err(&format!("{DB}w1\t192.0.2.31\tlb\t-root\n"));
    assert_eq!(spots(&d), ["E005 servers.tsv:4"]);
}

#[test]
fn bad_labels_are_e005_one_per_label() {
    let d = inv_err(&format!(
        "{DB}w1\t192.0.2.31\tlb\t\t\tzone\nw2\t192.0.2.32\tlb\t\t\t=a,b==c\nw3\t192.0.2.33\tlb\t\t\tz=a,z=b\n"
    ));
    assert_eq!(
        spots(&d),
        [
            "E005 servers.tsv:4",
            "E005 servers.tsv:5",
            "E005 servers.tsv:5",
            "E005 servers.tsv:6"
        ]
    );
    assert!(d[0].message.contains("not key=value"), "{}", d[0]);
    assert!(d[3].message.contains("appears twice"), "{}", d[3]);
}

#[test]
fn duplicate_hostname_is_e004_at_the_second_line_naming_the_first() {
    let d = inv_err(&format!("{DB}db2\t192.0.2.24\tlb\n"));
    assert_eq!(spots(&d), ["E004 servers.tsv:4"]);
    assert!(d[0].message.contains("already used on line 2"), "{}", d[0]);
}

#[test]
fn duplicate_ip_is_e004_at_the_second_line_naming_the_first() {
    let d = inv_err(&format!("{DB}lb1\t192.0.2.23\tlb\n"));
    assert_eq!(spots(&d), ["E004 servers.tsv:4"]);
    assert!(
        d[0].message
            .contains("192.0.2.23 is already used on line 3"),
        "{}",
        d[0]
    );
    // The same address written differently is still a duplicate.
    let d = inv_err("v1\t2001:db8::1\tlb\nv2\t2001:0db8:0::1\tlb\n");
    assert_eq!(spots(&d), ["E004 servers.tsv:2"]);
}

#[test]
fn every_problem_is_reported_at_once() {
    let d = inv_err(
        "# header comment\n\
         hostname\tip\troles\n\
         db1\t192.0.2.21\tetcd,postgress\n\
         db2 192.0.2.22 etcd\n\
         db1\t192.0.2.23\tetcd\troot\t99999\n",
    );
    assert_eq!(
        spots(&d),
        [
            "E006 servers.tsv:3",
            "E002 servers.tsv:4",
            "E005 servers.tsv:5",
            "E004 servers.tsv:5"
        ]
    );
}

// ---------------------------------------------------------------- quorum

#[test]
fn two_etcd_members_is_e007_at_the_last_one() {
    let inv = inv_ok(
        "lb1\t192.0.2.11\tlb\ndb1\t192.0.2.21\tetcd\ndb2\t192.0.2.22\tetcd\nw1\t192.0.2.51\tk8s-worker\n",
    );
    let d = validate_with_source(&inv, &Config::default(), CFG, None);
    assert_eq!(spots(&d), ["E007 servers.tsv:3"]);
    assert!(
        d[0].message.contains("`etcd` is on 2 hosts (db1, db2)"),
        "{}",
        d[0]
    );
    assert!(hint(&d[0]).contains("1 more host"), "{}", d[0]);
}

#[test]
fn four_postgres_members_is_e007_and_each_bad_role_is_reported() {
    let inv = inv_ok(&format!(
        "{DB}db4\t192.0.2.24\tpostgres\nmq1\t192.0.2.31\trabbitmq\n"
    ));
    let d = inv.check_quorum();
    assert_eq!(spots(&d), ["E007 servers.tsv:4", "E007 servers.tsv:5"]);
    assert!(
        d[0].message.contains("`postgres` is on 4 hosts"),
        "{}",
        d[0]
    );
    assert!(
        d[1].message.contains("`rabbitmq` is on 1 host "),
        "{}",
        d[1]
    );
}

#[test]
fn quorum_roles_on_no_host_are_fine() {
    let inv = inv_ok("lb1\t192.0.2.11\tlb\nw1\t192.0.2.51\tk8s-worker,minio\n");
    assert!(inv.check_quorum().is_empty());
}

// ---------------------------------------------------------------- kbz.toml

#[test]
fn toml_syntax_error_is_e008_with_its_line() {
    let d = cfg_err("[cluster]\nname = \"x\"\nforks = \n[timeouts]\n");
    assert_eq!(spots(&d), ["E008 kbz.toml:3"]);
    assert!(d[0].message.starts_with("not valid TOML"), "{}", d[0]);
    let d = cfg_err("[cluster]\nname = prod\n");
    assert_eq!(spots(&d), ["E008 kbz.toml:2"]);
}

#[test]
fn toml_unknown_key_is_e008_with_a_suggestion() {
    let d = cfg_err("[cluster]\nname = \"x\"\n\n[cluster.extra]\n");
    assert_eq!(d[0].code, Code::E008);
    let d = cfg_err("# c\n[cluster]\nname = \"x\"\nforkz = 5\n");
    assert_eq!(spots(&d), ["E008 kbz.toml:4"]);
    assert_eq!(d[0].message, "unknown key `forkz` in [cluster]");
    assert!(hint(&d[0]).starts_with("did you mean `forks`?"), "{}", d[0]);
    let d = cfg_err("[clustr]\nname = \"x\"\n");
    assert_eq!(spots(&d), ["E008 kbz.toml:1"]);
    assert!(
        hint(&d[0]).starts_with("did you mean `cluster`?"),
        "{}",
        d[0]
    );
}

#[test]
fn toml_wrong_type_is_e008_with_its_line() {
    let d = cfg_err("[cluster]\nname = \"x\"\n\n[timeouts]\nconnect = \"ten\"\n");
    assert_eq!(spots(&d), ["E008 kbz.toml:5"]);
    assert!(d[0].message.contains("`connect` in [timeouts]"), "{}", d[0]);
    let d = cfg_err("[cluster]\nsubnet = \"192.0.2.0/33\"\n");
    assert_eq!(spots(&d), ["E008 kbz.toml:2"]);
    let d = cfg_err("[vips]\npostgres = \"192.0.2.500\"\n");
    assert_eq!(spots(&d), ["E008 kbz.toml:2"]);
}

#[test]
fn semantic_config_errors_are_all_reported_with_lines() {
    let d = cfg_err(
        "[cluster]\nforks = 0\nsubnet = \"192.0.2.7/24\"\napt_proxy = \"192.0.2.5:3142\"\n\
         [kubernetes]\nflavor = \"k3z\"\n[vips]\npostgress = \"192.0.2.100\"\n\
         [[notify]]\nname = \"a\"\nurl = \"nope\"\n",
    );
    assert_eq!(
        spots(&d),
        [
            "E008 kbz.toml:2",
            "E008 kbz.toml:3",
            "E008 kbz.toml:4",
            "E008 kbz.toml:6",
            "E008 kbz.toml:8",
            "E008 kbz.toml:9"
        ]
    );
    assert!(hint(&d[1]).contains("192.0.2.0/24"), "{}", d[1]);
    assert!(hint(&d[3]).starts_with("did you mean `k3s`?"), "{}", d[3]);
    assert!(
        hint(&d[4]).starts_with("did you mean `postgres`?"),
        "{}",
        d[4]
    );
}

#[test]
fn bad_metallb_range_syntax_is_e008() {
    for bad in [
        "192.0.2.200",
        "192.0.2.220-192.0.2.200",
        "192.0.2.200-2001:db8::1",
        "x-y",
    ] {
        let d = cfg_err(&format!(
            "[cluster]\nname = \"x\"\n[kubernetes]\nmetallb_range = \"{bad}\"\n"
        ));
        assert_eq!(spots(&d), ["E008 kbz.toml:4"], "{bad}");
    }
    // A config built in code has no source: the file alone is named.
    let mut cfg = Config::default();
    cfg.kubernetes.metallb_range = Some("nonsense".into());
    let inv = inv_ok(DB);
    let d = validate_with_source(&inv, &cfg, CFG, None);
    assert_eq!(spots(&d), ["E008 kbz.toml"]);
}

#[test]
fn config_accepts_bom_crlf_and_dotted_keys() {
    let cfg = cfg_ok(
        "\u{feff}kubernetes.metallb_range = \"192.0.2.240/28\"\r\n[cluster]\r\nname = \"x\"\r\n",
    );
    assert_eq!(cfg.cluster.name, "x");
    let pool = cfg.kubernetes.metallb_pool().expect("set").expect("valid");
    assert_eq!(pool.to_string(), "192.0.2.240-192.0.2.255");
    assert_eq!(
        AddrRange::parse(" 192.0.2.1 - 192.0.2.9 ").map(|r| r.to_string()),
        Ok("192.0.2.1-192.0.2.9".to_string())
    );
}

#[test]
fn non_utf8_config_is_e008_with_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("kbz.toml");
    std::fs::write(&path, b"[cluster]\nname = \"caf\xe9\"\n").expect("write");
    let d = Config::load(&path).expect_err("latin-1");
    assert_eq!(spots(&d), [format!("E008 {}:2", path.display())]);
}

// ---------------------------------------------------------------- address plan

const PLAN: &str = "[cluster]\n\
                    subnet = \"192.0.2.0/24\"\n\
                    [vips]\n\
                    postgres = \"192.0.2.100\"\n\
                    redis = \"192.0.2.101\"\n\
                    [kubernetes]\n\
                    metallb_range = \"192.0.2.200-192.0.2.220\"\n";

fn plan_errors(inventory: &str, config: &str) -> Vec<Diagnostic> {
    let inv = inv_ok(inventory);
    let cfg = cfg_ok(config);
    validate_with_source(&inv, &cfg, CFG, Some(config))
}

#[test]
fn clean_plan_has_no_errors() {
    assert_eq!(spots(&plan_errors(DB, PLAN)), Vec::<String>::new());
}

#[test]
fn vip_equal_to_a_node_ip_is_e009_at_the_vip_line() {
    let d = plan_errors(DB, &PLAN.replace("192.0.2.101", "192.0.2.22"));
    assert_eq!(spots(&d), ["E009 kbz.toml:5"]);
    assert!(
        d[0].message
            .contains("redis = 192.0.2.22 is the address of host `db2` (servers.tsv:2)"),
        "{}",
        d[0]
    );
    assert!(hint(&d[0]).contains("e.g. 192.0.2.254"), "{}", d[0]);
}

#[test]
fn vip_equal_to_a_node_ip_is_e009_even_without_a_subnet() {
    let config = "[vips]\npostgres = \"192.0.2.21\"\n";
    let d = plan_errors(DB, config);
    assert_eq!(spots(&d), ["E009 kbz.toml:2"]);
}

#[test]
fn vip_outside_the_subnet_is_e009() {
    let d = plan_errors(DB, &PLAN.replace("192.0.2.100", "198.51.100.100"));
    assert_eq!(spots(&d), ["E009 kbz.toml:4"]);
    assert!(
        d[0].message
            .contains("outside [cluster] subnet 192.0.2.0/24"),
        "{}",
        d[0]
    );
}

#[test]
fn two_equal_vips_and_a_vip_in_the_metallb_range_are_e009() {
    let d = plan_errors(
        DB,
        &PLAN
            .replace("192.0.2.101", "192.0.2.100")
            .replace("192.0.2.200-", "192.0.2.100-"),
    );
    assert_eq!(
        spots(&d),
        ["E009 kbz.toml:4", "E009 kbz.toml:5", "E009 kbz.toml:5"]
    );
    assert!(
        d[0].message.contains("inside the MetalLB range"),
        "{}",
        d[0]
    );
    assert!(
        d[1].message.contains("also the VIP of `postgres`"),
        "{}",
        d[1]
    );
}

#[test]
fn metallb_range_overlapping_a_node_is_e009() {
    let d = plan_errors(
        DB,
        &PLAN.replace("192.0.2.200-192.0.2.220", "192.0.2.22-192.0.2.30"),
    );
    assert_eq!(spots(&d), ["E009 kbz.toml:7"]);
    assert!(
        d[0].message.contains("`db2` (servers.tsv:2) 192.0.2.22"),
        "{}",
        d[0]
    );
    assert!(d[0].message.contains("`db3`"), "{}", d[0]);
}

#[test]
fn metallb_range_outside_the_subnet_is_e009() {
    let d = plan_errors(DB, &PLAN.replace("192.0.2.220", "192.0.3.10"));
    assert_eq!(spots(&d), ["E009 kbz.toml:7"]);
    assert!(
        d[0].message.contains("not inside [cluster] subnet"),
        "{}",
        d[0]
    );
    let d = plan_errors(
        DB,
        &PLAN.replace("192.0.2.200-192.0.2.220", "192.0.2.240/28"),
    );
    assert_eq!(spots(&d), ["E009 kbz.toml:7"]);
    assert!(d[0].message.contains("broadcast address"), "{}", d[0]);
}

#[test]
fn node_outside_the_subnet_is_e009_at_its_inventory_line() {
    let d = plan_errors(&format!("{DB}w1\t198.51.100.7\tk8s-worker\n"), PLAN);
    assert_eq!(spots(&d), ["E009 servers.tsv:4"]);
    assert_eq!(d[0].host.as_deref(), Some("w1"));
}

#[test]
fn pod_cidr_overlapping_the_subnet_is_e009() {
    let config = "[cluster]\nsubnet = \"10.0.0.0/8\"\n[kubernetes]\npod_cidr = \"10.42.0.0/16\"\n";
    let d = plan_errors("db1\t10.0.0.21\tlb\n", config);
    // service_cidr keeps its default: the diagnostic points at the [kubernetes] table.
    assert_eq!(spots(&d), ["E009 kbz.toml:4", "E009 kbz.toml:3"]);
}

#[test]
fn load_and_validate_reports_both_files_together() {
    let dir = tempfile::tempdir().expect("tempdir");
    let inv = dir.path().join("servers.tsv");
    let cfg = dir.path().join("kbz.toml");
    std::fs::write(
        &inv,
        "db1\t192.0.2.21\tetcd\ndb2\t192.0.2.22\tetcd,postgress\n",
    )
    .expect("write");
    std::fs::write(&cfg, "[cluster]\nforkz = 3\n").expect("write");
    let d = load_and_validate(&inv, Some(&cfg)).expect_err("both bad");
    assert_eq!(
        spots(&d),
        [
            format!("E006 {}:2", inv.display()),
            format!("E008 {}:2", cfg.display())
        ]
    );
    // Once both parse, the cross-checks run with lines read from the file.
    std::fs::write(&inv, DB).expect("write");
    std::fs::write(&cfg, PLAN.replace("192.0.2.100", "192.0.2.23")).expect("write");
    let d = load_and_validate(&inv, Some(&cfg)).expect_err("vip clash");
    assert_eq!(spots(&d), [format!("E009 {}:4", cfg.display())]);
}

// ---------------------------------------------------------------- examples and robustness

#[test]
fn examples_parse_and_validate_clean() {
    let inv_path = examples().join("servers.tsv");
    let cfg_path = examples().join("kbz.toml");
    let inv = Inventory::load(&inv_path).expect("example inventory parses");
    let cfg = Config::load(&cfg_path).expect("example config parses");
    let d = validate(&inv, &cfg, &cfg_path.display().to_string());
    assert!(d.is_empty(), "{:#?}", spots(&d));
    assert_eq!(inv.hosts.len(), 14);
    assert_eq!(inv.with_role(Role::Lb).len(), 2);
    for role in Role::ALL.iter().filter(|r| r.needs_quorum()) {
        assert_eq!(inv.with_role(*role).len(), 3, "{role}");
    }
    assert_eq!(cfg.vips.len(), 5);
    assert!(cfg.cluster.apt_proxy.is_none());
    assert!(cfg.notify.is_empty());
    let both = load_and_validate(&inv_path, Some(&cfg_path)).expect("clean");
    assert_eq!(both.0, inv);
}

/// A small deterministic xorshift generator (no extra dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[test]
fn arbitrary_bytes_never_panic() {
    let inv_seed = std::fs::read(examples().join("servers.tsv")).expect("example");
    let cfg_seed = std::fs::read(examples().join("kbz.toml")).expect("example");
    let alphabet: &[u8] = b"\t\n\r #,=-./:[]\"'0123456789abcdefxyz\xff\xc3\xa9\xef\xbb\xbf";
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut mutate = |seed: &[u8]| -> Vec<u8> {
        let mut bytes = seed.to_vec();
        if rng.below(10) == 0 {
            return (0..rng.below(200)).map(|_| rng.next() as u8).collect();
        }
        for _ in 0..1 + rng.below(8) {
            let at = rng.below(bytes.len() + 1);
            match rng.below(4) {
                0 if at < bytes.len() => {
                    bytes.remove(at);
                }
                1 if at < bytes.len() => bytes[at] = alphabet[rng.below(alphabet.len())],
                2 => bytes.insert(at, alphabet[rng.below(alphabet.len())]),
                _ => {
                    let len = rng.below(40);
                    let end = (at + len).min(bytes.len());
                    bytes.drain(at..end);
                }
            }
        }
        bytes
    };
    let (mut inv_ok, mut cfg_ok, mut both) = (0, 0, 0);
    for _ in 0..3000 {
        let inv_bytes = mutate(&inv_seed);
        let cfg_bytes = mutate(&cfg_seed);
        let inv = Inventory::parse(INV, &inv_bytes);
        let text = String::from_utf8_lossy(&cfg_bytes);
        let cfg = Config::parse(CFG, &text);
        for d in inv.as_ref().err().into_iter().flatten() {
            assert!(d.location.is_some(), "{d}");
        }
        for d in cfg.as_ref().err().into_iter().flatten() {
            assert!(d.location.is_some(), "{d}");
        }
        inv_ok += usize::from(inv.is_ok());
        cfg_ok += usize::from(cfg.is_ok());
        if let (Ok(inv), Ok(cfg)) = (&inv, &cfg) {
            both += 1;
            let _ = validate_with_source(inv, cfg, CFG, Some(&text));
        }
    }
    // The mutations must leave some inputs valid, or the cross-checks were never exercised.
    assert!(
        inv_ok > 0 && cfg_ok > 0 && both > 0,
        "{inv_ok} {cfg_ok} {both}"
    );
}

#[test]
fn an_oversized_inventory_or_config_is_e001_before_it_is_parsed() {
    let dir = tempfile::tempdir().expect("tmp");
    let big = dir.path().join("servers.tsv");
    let line = "db1\t10.0.0.1\tpostgres\n";
    std::fs::write(
        &big,
        line.repeat(kbz_core::inventory::MAX_INPUT_BYTES / line.len() + 1),
    )
    .expect("write");
    let d = Inventory::load(&big).expect_err("too large");
    assert_eq!(spots(&d), [format!("E001 {}", big.display())]);
    assert!(
        d[0].message.contains("larger than 1048576 bytes"),
        "{}",
        d[0].message
    );
    let toml = dir.path().join("kbz.toml");
    std::fs::write(&toml, "# x\n".repeat(300_000)).expect("write");
    let d = Config::load(&toml).expect_err("too large");
    assert_eq!(d[0].code, Code::E001);
    // An endless file (a device given by mistake) is refused without reading it all.
    let d = Inventory::load(Path::new("/dev/zero")).expect_err("endless");
    assert_eq!(d[0].code, Code::E001);
}

#[test]
fn thousands_of_the_same_problem_are_summarized() {
    let text: String = (1..=5000)
        .map(|i| {
            format!(
                "h{i}\t10.0.{}.{}\tpostgres\tssh_port=notaport\n",
                i / 250,
                i % 250 + 1
            )
        })
        .collect();
    let d = inv_err(&text);
    let e005: Vec<&Diagnostic> = d.iter().filter(|d| d.code == Code::E005).collect();
    assert_eq!(e005.len(), kbz_errors::MAX_PER_CODE + 1, "{:#?}", spots(&d));
    let last = e005.last().expect("summary");
    assert!(
        last.message.starts_with(&format!(
            "... and {} more E005 problem(s)",
            5000 - kbz_errors::MAX_PER_CODE
        )),
        "{}",
        last.message
    );
    assert_eq!(
        last.location.as_ref().and_then(|l| l.line),
        Some(kbz_errors::MAX_PER_CODE + 1)
    );
}
