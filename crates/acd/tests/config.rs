//! Configuration parsing and validation.

use hotline_acd::sim::SimConfig;
use hotline_acd::{AcdConfig, AcdError, Fallback, Strategy};

fn err(toml: &str) -> String {
    match AcdConfig::from_toml(toml) {
        Err(e) => e.to_string(),
        Ok(c) => panic!("accepted: {c:?}"),
    }
}

#[test]
fn full_queue_parses() {
    let c = AcdConfig::from_toml(
        r#"
aging_secs = 30
[[queue]]
name = "sales"
strategy = "most-skilled"
skills = [{ skill = "lang-de", min = 6 }]
max_len = 50
fallback = { number = "+4930999" }
overflow = [{ after_secs = 20, min_proficiency = 3, add_queues = ["support"], any_site = true }]
[[queue]]
name = "support"
fallback = "callback"
[[agent]]
id = "anna"
site = "home"
skills = { lang-de = 9 }
queues = { sales = 0, support = 2 }
"#,
    )
    .expect("valid");
    assert_eq!(c.queues[0].strategy, Strategy::MostSkilled);
    assert_eq!(c.queues[0].fallback, Fallback::Number("+4930999".into()));
    assert_eq!(c.queues[1].fallback, Fallback::Callback);
    assert_eq!(c.agents[0].queues["support"], 2);
}

#[test]
fn unknown_fields_are_rejected_with_position() {
    let e = err("[[queue]]\nname = \"q\"\nring_timout_secs = 5\n");
    assert!(
        e.contains("ring_timout_secs") && e.contains("line 3"),
        "{e}"
    );
    let e = err("[[queue]]\nname = \"q\"\nstrategy = \"fastest\"\n");
    assert!(e.contains("fastest"), "{e}");
}

#[test]
fn cross_references_and_ranges_are_checked() {
    assert!(
        err("[[queue]]\nname = \"q\"\nskills = [{ skill = \"s\", min = 11 }]\n")
            .contains("outside 1..=10")
    );
    assert!(
        err("[[queue]]\nname = \"q\"\noverflow = [{ after_secs = 5, add_queues = [\"nope\"] }]\n")
            .contains("unknown queue \"nope\"")
    );
    assert!(err("[[queue]]\nname = \"q\"\n[[queue]]\nname = \"q\"\n").contains("duplicate"));
    assert!(err(
        "[[queue]]\nname = \"a\"\nfallback = { queue = \"b\" }\n[[queue]]\nname = \"b\"\nfallback = { queue = \"a\" }\n"
    )
    .contains("cycle"));
    assert!(
        err("[[queue]]\nname = \"q\"\noverflow = [{ after_secs = 50 }, { after_secs = 10 }]\n")
            .contains("must not decrease")
    );
    assert!(err("[[agent]]\nid = \"x\"\nqueues = { ghost = 0 }\n").contains("unknown queue"));
    assert!(matches!(
        AcdConfig::from_toml("[[queue]]\nname = 5\n"),
        Err(AcdError::Parse(_))
    ));
}

#[test]
fn example_simulation_config_parses() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/simulate.toml"
    ))
    .expect("config/simulate.toml exists");
    let cfg = SimConfig::from_toml(&text).expect("valid simulation config");
    assert!(cfg.acd.queues.len() >= 2);
    assert!(!cfg.traffic.is_empty());
    assert!(
        cfg.acd.queues.iter().any(|q| !q.overflow.is_empty()),
        "shows overflow"
    );
    assert!(
        cfg.traffic.iter().any(|t| t.classes.len() >= 2),
        "shows priorities"
    );
}

#[test]
fn engine_can_move_into_its_own_task() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<hotline_acd::Engine>();
    assert_send::<hotline_acd::Decision>();
}

#[test]
fn simulation_parameters_are_checked() {
    let base = "[acd]\n[[acd.queue]]\nname = \"q\"\n";
    for (extra, needle) in [
        ("[sim]\nhours = 0\n", "sim.hours"),
        ("[sim]\nhours = 2\nwarmup_hours = 3\n", "warmup"),
        (
            "[[traffic]]\nqueue = \"q\"\ncalls_per_hour = 1e12\naht_secs = 100\n",
            "calls_per_hour",
        ),
        (
            "[[traffic]]\nqueue = \"q\"\ncalls_per_hour = 10\naht_secs = 0\n",
            "aht_secs",
        ),
        (
            "[[traffic]]\nqueue = \"zz\"\ncalls_per_hour = 10\naht_secs = 10\n",
            "zz",
        ),
        (
            "[[traffic]]\nqueue = \"q\"\ncalls_per_hour = 10\naht_secs = 10\nbogus = 1\n",
            "bogus",
        ),
    ] {
        let text = if extra.starts_with("[sim]") {
            format!("{extra}{base}")
        } else {
            format!("{base}{extra}")
        };
        match SimConfig::from_toml(&text) {
            Err(e) => assert!(e.to_string().contains(needle), "{e} lacks {needle}"),
            Ok(_) => panic!("accepted {extra}"),
        }
    }
}

proptest::proptest! {
    /// Arbitrary text, and valid configs with one byte changed, never panic the parsers.
    #[test]
    fn config_parsers_never_panic(text in ".{0,200}", pos in 0usize..2000, byte in 0u8..128) {
        let _ = AcdConfig::from_toml(&text);
        let _ = SimConfig::from_toml(&text);
        let example = include_str!("../../../config/simulate.toml");
        let mut bytes = example.as_bytes().to_vec();
        let i = pos % bytes.len();
        bytes[i] = byte;
        // Whatever parses and validates must also build an engine.
        if let Ok(mutated) = String::from_utf8(bytes)
            && let Ok(cfg) = SimConfig::from_toml(&mutated)
        {
            let built = hotline_acd::Engine::new(&cfg.expanded_acd(), hotline_acd::Millis(0));
            proptest::prop_assert!(built.is_ok(), "{built:?}");
        }
    }
}
