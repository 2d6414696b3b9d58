//! The shape of the file: syntax errors, unknown keys at every level, every
//! error reported at once, loading from disk, and service summaries.

use std::fs;

use super::*;

#[test]
fn syntax_errors_are_all_reported_with_their_position() {
    let text = lines(&[
        "[[service]]",
        "name = ",
        "listen = \"127.0.0.1:0\"",
        "[[service.backend]",
        "address = \"127.0.0.1:1\"",
    ]);
    assert_eq!(
        errors(&text),
        [
            "lb.toml:2:8: TOML syntax error: string values must be quoted, expected literal string",
            "lb.toml:4:19: TOML syntax error: unclosed array table, expected `]`",
        ]
    );
}

#[test]
fn duplicate_keys_are_syntax_errors() {
    let text = service_with(&["name = \"again\""]);
    assert_eq!(
        error(&text),
        "lb.toml:4:1: TOML syntax error: duplicate key"
    );
}

#[test]
fn unknown_top_level_keys() {
    let text = lines(&["[[services]]", "name = \"pg\"", "[globl]"]) + &service_with(&[]);
    assert_eq!(
        errors(&text),
        [
            "lb.toml:1:3: services: unknown key `services`; did you mean `service`?",
            "lb.toml:3:2: globl: unknown key `globl`; did you mean `global`?",
        ]
    );
}

#[test]
fn unknown_key_in_a_service() {
    assert_eq!(
        error(&service_with(&["listn = \"127.0.0.1:1\""])),
        "lb.toml:4:1: service \"pg\".listn: unknown key `listn`; did you mean `listen`?"
    );
}

#[test]
fn unknown_key_in_nested_tables() {
    let text = service_with(&["[service.health]", "intervl = \"2s\""]);
    assert_eq!(
        error(&text),
        "lb.toml:5:1: service \"pg\".health.intervl: unknown key `intervl`; did you mean \
         `interval`?"
    );
    assert_eq!(
        error(&backend_with(&["wieght = 2"])),
        "lb.toml:6:1: service \"pg\".backend[0].wieght: unknown key `wieght`; did you mean \
         `weight`?"
    );
    let text = service_with(&["outlier = { failures = 3 }"]);
    assert_eq!(
        error(&text),
        "lb.toml:4:13: service \"pg\".outlier.failures: unknown key `failures`; did you mean \
         `consecutive_failures`?"
    );
    let text = lines(&["[global]", "worker = 2"]) + &service_with(&[]);
    assert_eq!(
        error(&text),
        "lb.toml:2:1: global.worker: unknown key `worker`; did you mean `workers`?"
    );
}

#[test]
fn bad_keys_in_one_table_do_not_hide_each_other() {
    let text = backend_with(&[
        "wieght = 2",
        "max_connections = \"ten\"",
        "slow_start = \"0s\"",
        "colour = 1",
    ]);
    let text = text + "[[service.backend]]\naddress = \"127.0.0.1:5433\"\nweight = 0\n";
    assert_eq!(
        errors(&text),
        [
            "lb.toml:6:1: service \"pg\".backend[0].wieght: unknown key `wieght`; did you \
             mean `weight`?",
            "lb.toml:7:19: service \"pg\".backend[0].max_connections: invalid type: string \
             \"ten\", expected an integer",
            "lb.toml:9:1: service \"pg\".backend[0].colour: unknown key `colour`; valid keys \
             here: `address`, `weight`, `max_connections`, `backup`, `slow_start`, `health`",
            "lb.toml:12:10: service \"pg\".backend[1].weight: must be between 1 and 1000, got 0",
        ]
    );
}

#[test]
fn every_error_in_every_section_is_reported_at_once() {
    let text = lines(&[
        "[global]",
        "workers = 5000",
        "",
        "[[service]]",
        "name = \"pg\"",
        "listen = \"127.0.0.1:0\"",
        "strategy = \"least_conn\"",
        "",
        "[[service.backend]]",
        "address = \"127.0.0.1:5432\"",
        "weight = 0",
        "",
        "[[service]]",
        "name = \"web\"",
        "listen = \"127.0.0.1:0\"",
        "timeout = \"5s\"",
        "",
        "[[service.backend]]",
        "address = \"127.0.0.1\"",
    ]);
    assert_eq!(
        errors(&text),
        [
            "lb.toml:2:11: global.workers: must be between 0 and 1024, got 5000",
            "lb.toml:7:12: service \"pg\".strategy: must be one of \"round_robin\", \
             \"least_connections\", \"power_of_two\", \"random\", \"least_response_time\", \
             \"source_hash\", \"consistent_hash\", \"maglev\"; got \"least_conn\"",
            "lb.toml:11:10: service \"pg\".backend[0].weight: must be between 1 and 1000, got 0",
            "lb.toml:16:1: service \"web\".timeout: unknown key `timeout`; did you mean \
             `connect_timeout`, `idle_timeout` or `preread_timeout`?",
            "lb.toml:19:11: service \"web\".backend[0].address: missing port in \"127.0.0.1\": \
             expected IP:port, [IPv6]:port or host:port",
        ]
    );
}

#[test]
fn errors_carry_their_parts_separately() {
    let errors = check(&backend_with(&["weight = 0"])).unwrap_err();
    let error = errors.iter().next().unwrap();
    assert_eq!(error.file, "lb.toml");
    assert_eq!((error.line, error.column), (Some(6), Some(10)));
    assert_eq!(error.key_path, "service \"pg\".backend[0].weight");
    assert_eq!(error.message, "must be between 1 and 1000, got 0");
}

#[test]
fn the_file_name_is_shown_as_given() {
    let errors = parse("[nope]\n", Path::new("conf/lb.toml")).unwrap_err();
    assert!(
        errors
            .to_string()
            .starts_with("conf/lb.toml:1:2: nope: unknown key `nope`")
    );
}

#[test]
fn load_reads_the_file() {
    let dir = std::env::temp_dir().join(format!("l4lb-config-test-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lb.toml");
    fs::write(&path, service_with(&[])).unwrap();
    let config = load(&path).unwrap();
    assert_eq!(config.source, path);
    assert_eq!(config.services[0].name, "pg");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn load_reports_a_file_it_cannot_read() {
    let path = Path::new("/nonexistent/l4lb/lb.toml");
    let errors = load(path).unwrap_err();
    assert_eq!(errors.len(), 1);
    let message = errors.to_string();
    assert!(
        message.starts_with("/nonexistent/l4lb/lb.toml: cannot read the configuration file: "),
        "{message}"
    );
}

#[test]
fn summary_of_a_plain_service() {
    let config = valid(&service_with(&["strategy = \"least_connections\""]));
    assert_eq!(
        config.services[0].summary(),
        "service \"pg\": tcp 127.0.0.1:0 -> 1 backend (least_connections)"
    );
}

#[test]
fn summary_mentions_listeners_backups_health_and_outlier() {
    let text = lines(&[
        "[[service]]",
        "name = \"pg\"",
        "listen = [\"127.0.0.1:6432\", \"[::1]:6432\"]",
        "health = { interval = \"5s\" }",
        "outlier = { consecutive_failures = 3, ejection_time = \"10s\" }",
        "[[service.backend]]",
        "address = \"127.0.0.1:5432\"",
        "[[service.backend]]",
        "address = \"127.0.0.1:5433\"",
        "[[service.backend]]",
        "address = \"127.0.0.1:5434\"",
        "backup = true",
    ]);
    let config = check(&text).unwrap();
    assert_eq!(
        config.services[0].summary(),
        "service \"pg\": tcp 127.0.0.1:6432, [::1]:6432 -> 2 backends + 1 backup (round_robin), \
         health tcp every 5s, outlier ejection after 3 failures for 10s"
    );
}

#[test]
fn sample_errors_for_a_bad_file() {
    let text = lines(&[
        "[[service]]",
        "name = \"pg\"",
        "listen = \"0.0.0.0:6432\"",
        "strategy = \"least_conection\"",
        "connect_timeout = \"three seconds\"",
        "",
        "[[service.backend]]",
        "address = \"127.0.0.1:5432\"",
        "weight = 0",
    ]);
    let lines = errors(&text);
    for line in &lines {
        println!("{line}");
    }
    assert_eq!(lines.len(), 3);
}

#[test]
fn wrong_types_are_named_in_toml_terms() {
    let text = service_with(&[
        "strategy = [\"random\"]",
        "max_connections = { a = 1 }",
        "hash_key = 1979-05-27",
        "allow = [1]",
    ]);
    assert_eq!(
        errors(&text),
        [
            "lb.toml:4:12: service \"pg\".strategy: invalid type: array, expected a string",
            "lb.toml:5:19: service \"pg\".max_connections: invalid type: table, expected an integer",
            "lb.toml:6:12: service \"pg\".hash_key: invalid type: datetime, expected a string",
            "lb.toml:7:10: service \"pg\".allow: invalid type: integer `1`, expected a string",
        ]
    );
}

#[test]
fn items_that_are_not_tables_keep_the_indexes_of_the_others() {
    let text = lines(&[
        "service = [",
        "  1,",
        "  { name = \"a b\", listen = \"127.0.0.1:0\", backend = [2, { address = \"x\" }] },",
        "]",
    ]);
    assert_eq!(
        errors(&text),
        [
            "lb.toml:2:3: service[0]: expected a table, got an integer",
            "lb.toml:3:12: service[1].name: invalid service name \"a b\": expected 1 to 64 \
             characters from A-Z, a-z, 0-9, '_', '.' and '-'",
            "lb.toml:3:54: service[1].backend[0]: expected a table, got an integer",
            "lb.toml:3:69: service[1].backend[1].address: missing port in \"x\": expected \
             IP:port, [IPv6]:port or host:port",
        ]
    );
}
