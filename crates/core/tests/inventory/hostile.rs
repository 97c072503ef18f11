//! Hostile values in every servers.tsv column and every free-text kbz.toml value that reaches a
//! host: quotes, newlines, `-o`-style options, NUL, `}`, `#`, `$(`, backticks, spaces. Each is
//! refused by the validation layer with an E-code, the file's line and a fix.

use super::{hint, spots, CFG, DB, INV};
use kbz_core::config::Config;
use kbz_core::inventory::Inventory;
use kbz_errors::{Code, Diagnostic};

/// The values every allow-list must refuse, bare and inside an otherwise good value.
const HOSTILE: &[&str] = &[
    "a\"b",
    "a'b",
    "a\nb",
    "-oProxyCommand=id",
    "a\0b",
    "a}b",
    "a#b",
    "$(id)",
    "`id`",
    "a b",
    "a;b",
    "a\\b",
    "a{{b}}",
];

/// A TOML basic string holding `s`.
fn toml_str(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Parses `text`; asserts exactly one E008 on `line` with a fix, and returns it.
fn one_e008(text: &str, line: usize) -> Diagnostic {
    let d = match Config::parse(CFG, text) {
        Ok(_) => panic!("accepted a hostile value:\n{text}"),
        Err(d) => d,
    };
    assert_eq!(spots(&d), [format!("E008 {CFG}:{line}")], "{text}\n{d:#?}");
    assert!(!hint(&d[0]).is_empty(), "no fix: {}", d[0]);
    d.into_iter().next().expect("one")
}

#[test]
fn hostile_cluster_values_are_e008_at_their_line() {
    for v in HOSTILE {
        for (key, value) in [
            ("apt_proxy", toml_str(&format!("http://proxy{v}:3142"))),
            ("apt_proxy", toml_str(&format!("http://proxy:3142/{v}"))),
            ("apt_proxy", toml_str(v)),
            (
                "ntp_servers",
                format!("[\"ntp.example.org\", {}]", toml_str(v)),
            ),
            ("ntp_servers", format!("[{}]", toml_str(&format!("ntp{v}")))),
            ("extra_packages", format!("[\"htop\", {}]", toml_str(v))),
            (
                "extra_packages",
                format!("[{}]", toml_str(&format!("htop{v}"))),
            ),
        ] {
            let text = format!("# hostile\n[cluster]\nname = \"prod\"\n{key} = {value}\n");
            let d = one_e008(&text, 4);
            assert!(d.message.contains(key), "{key}: {}", d.message);
        }
        if *v != "a b" {
            let text = format!("[cluster]\nname = {}\n", toml_str(v));
            one_e008(&text, 2);
        }
    }
}

#[test]
fn hostile_versions_urls_and_ssh_settings_are_e008_at_their_line() {
    for v in HOSTILE {
        for (table, key, value) in [
            ("versions", "postgres", toml_str(v)),
            ("versions", "kubeadm", toml_str(&format!("1.31.4{v}"))),
            (
                "kubernetes",
                "registry_mirror",
                toml_str(&format!("https://mirror{v}:5000")),
            ),
            (
                "kubernetes",
                "registry_mirror",
                toml_str(&format!("https://mirror:5000/{v}")),
            ),
            (
                "kubernetes",
                "rancher_hostname",
                toml_str(&format!("rancher{v}.example")),
            ),
            ("ssh", "jump_host", toml_str(&format!("ops@bastion{v}:22"))),
            ("ssh", "jump_host", toml_str(&format!("{v}@bastion:22"))),
            ("postgres", "app_user", toml_str(&format!("shop{v}"))),
            ("postgres", "app_database", toml_str(v)),
        ] {
            let text = format!("[{table}]\n{key} = {value}\n");
            one_e008(&text, 2);
        }
    }
    for v in ["a\nb", "a\0b"] {
        one_e008(&format!("[ssh]\nkey = {}\n", toml_str(v)), 2);
    }
    one_e008("[versions]\n\"$(id)\" = \"1\"\n", 2);
    // The application role cannot be one of the cluster's own roles.
    for name in ["postgres", "replicator", "rewind_user", "pg_monitor"] {
        let d = one_e008(&format!("[postgres]\napp_user = \"{name}\"\n"), 2);
        assert!(d.message.contains("reserved"), "{}", d.message);
    }
}

#[test]
fn hostile_artifact_versions_and_typed_values_are_e008_at_their_line() {
    let sha = "0".repeat(64);
    for v in HOSTILE {
        let text = format!(
            "[artifacts.patroni]\nversion = {}\nsha256 = \"{sha}\"\n",
            toml_str(&format!("4.1.5{v}"))
        );
        one_e008(&text, 2);
    }
    // Addresses, CIDRs and numbers are typed: a hostile string does not even deserialise.
    for (table, key) in [("vips", "postgres"), ("cluster", "subnet")] {
        for v in HOSTILE {
            let text = format!(
                "[{table}]\n{key} = {}\n",
                toml_str(&format!("192.0.2.0{v}"))
            );
            one_e008(&text, 2);
        }
    }
    for v in HOSTILE {
        let text = format!(
            "[kubernetes]\npod_cidr = {}\n",
            toml_str(&format!("10.42.0.0/16{v}"))
        );
        one_e008(&text, 2);
    }
}

/// Parses `text`; asserts it fails with E002/E005 diagnostics all on `line`, each with a fix.
fn inv_refused(text: &str, line: usize) -> Vec<Diagnostic> {
    let d = match Inventory::parse(INV, text.as_bytes()) {
        Ok(_) => panic!("accepted a hostile line:\n{text:?}"),
        Err(d) => d,
    };
    for x in &d {
        assert!(matches!(x.code, Code::E002 | Code::E005), "{x}");
        assert_eq!(
            x.location.as_ref().and_then(|l| l.line),
            Some(line),
            "{text:?}: {x}"
        );
        assert!(!hint(x).is_empty(), "no fix: {x}");
    }
    d
}

#[test]
fn hostile_values_in_every_inventory_column_are_refused_at_their_line() {
    for v in HOSTILE {
        let cols = [
            format!("w{v}\t192.0.2.31\tlb"),
            format!("w1\t192.0.2.3{v}\tlb"),
            format!("w1\t192.0.2.31\tlb{v}"),
            format!("w1\t192.0.2.31\tlb\tops{v}"),
            format!("w1\t192.0.2.31\tlb\tops\t22{v}"),
            format!("w1\t192.0.2.31\tlb\t\t\tiface=eth0{v}"),
            format!("w1\t192.0.2.31\tlb\t\t\tiface={v}"),
            format!("w1\t192.0.2.31\tlb\t\t\tzone=a{v}"),
            format!("w1\t192.0.2.31\tlb\t\t\tzone=a,rack={v}"),
        ];
        for line in cols {
            let text = format!("{DB}{line}\n");
            let d = match Inventory::parse(INV, text.as_bytes()) {
                Ok(inv) => panic!("accepted {line:?}: {:?}", inv.hosts.last()),
                Err(d) => d,
            };
            assert!(
                d.iter()
                    .all(|x| matches!(x.code, Code::E002 | Code::E005 | Code::E006)),
                "{line:?}: {d:#?}"
            );
            // A newline splits the host line: the second half is the bad line 5.
            let want = if v.contains('\n') { [4, 5] } else { [4, 4] };
            assert!(
                d.iter().any(|x| x
                    .location
                    .as_ref()
                    .and_then(|l| l.line)
                    .is_some_and(|l| want.contains(&l))),
                "{line:?}: {d:#?}"
            );
            assert!(d.iter().all(|x| !hint(x).is_empty()), "{d:#?}");
        }
    }
}

#[test]
fn an_iface_label_is_an_interface_name() {
    let d = inv_refused(&format!("{DB}w1\t192.0.2.31\tlb\t\t\tiface=-eth0\n"), 4);
    assert!(d[0].message.contains("iface"), "{}", d[0]);
    assert!(hint(&d[0]).contains("ip -brief address"), "{}", d[0]);
    let d = inv_refused(&format!("{DB}w1\t192.0.2.31\tlb\t\t\tiface=eth0}}\n"), 4);
    assert!(d[0].message.contains("`}`"), "{}", d[0]);
    let d = inv_refused(
        &format!("{DB}w1\t192.0.2.31\tlb\t\t\tiface=averyveryverylong0\n"),
        4,
    );
    assert_eq!(d.len(), 1);
}
