//! Unit tests of the SSH executor's pure parts: specs, options, known_hosts parsing, command
//! lines and key checks.

use super::options::expand_tilde;
use super::*;

#[test]
fn jump_host_specs() {
    let j = JumpHost::parse("ops@bastion.example.com:2222").expect("parse");
    assert_eq!(
        j,
        JumpHost {
            user: "ops".into(),
            host: "bastion.example.com".into(),
            port: 2222
        }
    );
    assert_eq!(j.to_string(), "ops@bastion.example.com:2222");
    let j = JumpHost::parse("10.0.0.5").expect("parse");
    assert_eq!((j.user.as_str(), j.port), ("root", 22));
    let j = JumpHost::parse("me@[2001:db8::1]:23").expect("parse");
    assert_eq!((j.host.as_str(), j.port), ("2001:db8::1", 23));
    assert_eq!(j.to_string(), "me@[2001:db8::1]:23");
    assert_eq!(JumpHost::parse("2001:db8::1").expect("parse").port, 22);
    for bad in [
        "", "a b", "@h", "h:x", "h:0", "h:70000", "u@", "[::1", "[::1]x",
    ] {
        let err = JumpHost::parse(bad).expect_err(bad);
        assert_eq!(
            kbz_errors::HasCode::code(&err),
            kbz_errors::Code::E018,
            "{bad}"
        );
    }
}

#[test]
fn options_from_config_expand_home() {
    let mut cfg = Config::default();
    let home = Path::new("/home/op");
    let o = SshOptions::from_config_with_home(&cfg, Some(home)).expect("options");
    assert_eq!(o.known_hosts, PathBuf::from("/home/op/.ssh/known_hosts"));
    assert_eq!(o.key, None);
    assert_eq!(o.connect_timeout, Duration::from_secs(10));
    assert_eq!(o.command_timeout, Duration::from_secs(900));
    assert!(!o.accept_new_host_keys && o.sudo && o.jump.is_none());

    cfg.ssh.key = Some("~/.ssh/id_ed25519".into());
    cfg.ssh.known_hosts = Some("/etc/kbz/known_hosts".into());
    cfg.ssh.jump_host = Some("ops@bastion:2222".into());
    cfg.timeouts.connect = 3;
    let o = SshOptions::from_config_with_home(&cfg, Some(home)).expect("options");
    assert_eq!(o.key, Some(PathBuf::from("/home/op/.ssh/id_ed25519")));
    assert_eq!(o.known_hosts, PathBuf::from("/etc/kbz/known_hosts"));
    assert_eq!(o.jump.as_ref().map(|j| j.port), Some(2222));
    assert_eq!(o.connect_timeout, Duration::from_secs(3));

    cfg.ssh.jump_host = Some("ops@bastion:notaport".into());
    assert!(SshOptions::from_config_with_home(&cfg, Some(home)).is_err());
    assert_eq!(expand_tilde("~", Some(home)), PathBuf::from("/home/op"));
    assert_eq!(expand_tilde("~x/y", Some(home)), PathBuf::from("~x/y"));
    assert_eq!(expand_tilde("~/k", None), PathBuf::from("~/k"));
}

#[test]
fn command_lines() {
    assert_eq!(
        command_line("echo 'hi'", Duration::from_secs(10), false),
        "timeout -k 10 15 sh -c 'echo '\\''hi'\\'''"
    );
    assert!(command_line("id", Duration::from_secs(1), true).starts_with("sudo -n timeout"));
}

#[test]
fn sudo_refusals_are_recognized_from_captured_stderr() {
    let out = |status, stderr: &str| Output {
        status,
        stdout: Vec::new(),
        stderr: stderr.as_bytes().to_vec(),
    };
    let cases = [
        (1, "sudo: a password is required\n", Some("password")),
        (
            1,
            "sudo: unable to resolve host db1: Name or service not known\nsudo: a password is required\n",
            Some("password"),
        ),
        (
            1,
            "deploy is not in the sudoers file.  This incident will be reported.\n",
            Some("sudoers"),
        ),
        (1, "sudo: deploy is not in the sudoers file.\n", Some("sudoers")),
        (127, "bash: line 1: sudo: command not found\n", Some("not installed")),
        (127, "sh: 1: sudo: not found\n", Some("not installed")),
        // The script's own failures stay outputs, even when they mention sudo later on.
        (1, "E: Unable to locate package x\nsudo: a password is required\n", None),
        (127, "sh: 1: frobnicate: not found\n", None),
    ];
    for (status, stderr, want) in cases {
        let got = sudo_refusal(&out(status, stderr));
        match want {
            Some(w) => assert!(got.is_some_and(|g| g.contains(w)), "{stderr:?} -> {got:?}"),
            None => assert_eq!(got, None, "{stderr:?}"),
        }
    }
}

#[test]
fn known_hosts_names_follow_openssh() {
    let ep = |addr: &str, port| Endpoint {
        addr: addr.into(),
        port,
        user: "root".into(),
    };
    assert_eq!(ep("10.0.0.1", 22).known_hosts_name(), "10.0.0.1");
    assert_eq!(ep("10.0.0.1", 2222).known_hosts_name(), "[10.0.0.1]:2222");
    assert_eq!(ep("::1", 22).known_hosts_name(), "::1");
    assert_eq!(ep("::1", 2222).known_hosts_name(), "[::1]:2222");
}

#[test]
fn passphrase_protected_openssh_keys_are_detected() {
    // Header of an OpenSSH key encrypted with aes256-ctr (no secret material).
    let mut blob = b"openssh-key-v1\0".to_vec();
    blob.extend_from_slice(&10u32.to_be_bytes());
    blob.extend_from_slice(b"aes256-ctr");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&blob);
    let text =
        format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{b64}\n-----END OPENSSH PRIVATE KEY-----\n");
    assert!(openssh_key_is_encrypted(&text));
    let mut plain = b"openssh-key-v1\0".to_vec();
    plain.extend_from_slice(&4u32.to_be_bytes());
    plain.extend_from_slice(b"none");
    let b64 = base64::engine::general_purpose::STANDARD.encode(&plain);
    let text =
        format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{b64}\n-----END OPENSSH PRIVATE KEY-----\n");
    assert!(!openssh_key_is_encrypted(&text));
}

#[test]
fn connections_get_tcp_keepalive_and_a_user_timeout_of_three_intervals() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let s = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
    session::tune_tcp(&s, Duration::from_secs(5)).expect("tune");
    let sock = socket2::SockRef::from(&s);
    assert!(sock.keepalive().expect("SO_KEEPALIVE"));
    assert_eq!(
        sock.tcp_keepalive_time().expect("idle"),
        Duration::from_secs(5)
    );
    assert_eq!(
        sock.tcp_keepalive_interval().expect("interval"),
        Duration::from_secs(5)
    );
    assert_eq!(sock.tcp_keepalive_retries().expect("retries"), 3);
    assert_eq!(
        sock.tcp_user_timeout().expect("user timeout"),
        Some(Duration::from_secs(15))
    );
    let o = SshOptions::new("/tmp/kh");
    assert_eq!(o.keepalive, DEFAULT_KEEPALIVE);
    assert_eq!(o.max_output, DEFAULT_MAX_OUTPUT);
    assert_eq!(
        o.keepalive(Duration::ZERO).keepalive,
        Duration::from_secs(1)
    );
}
