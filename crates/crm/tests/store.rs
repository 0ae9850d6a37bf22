//! The store's behaviour, identical on SQLite and PostgreSQL.

mod common;

use hotline_crm::*;

fn person(title: &str, first: &str, surname: &str, tier: Tier) -> CustomerData {
    CustomerData {
        title: Some(title.into()),
        first_name: Some(first.into()),
        surname: surname.into(),
        tier,
        ..CustomerData::default()
    }
}

fn known_id(i: &Identification) -> i64 {
    match i {
        Identification::Known { customer } => customer.id,
        other => panic!("expected Known, got {other:?}"),
    }
}

async fn identifies_one_customer_from_any_formatting(store: Store) {
    let id = store
        .create_customer(
            &person("Dr.", "Anna", "Weber", Tier::Vip),
            &["+49 30 1234567", "0171 2345678"],
        )
        .await
        .unwrap();
    for variant in [
        "+49301234567",
        "030 1234567",
        "0049 30 1234567",
        "+49 (30) 123-4567",
        "tel:+49-30-1234567",
        "sip:+49301234567@pbx.example;user=phone",
        "01712345678",
    ] {
        let ident = store.identify(variant).await.unwrap();
        assert_eq!(known_id(&ident), id, "variant {variant:?}");
    }
    let c = store.customer(id).await.unwrap().unwrap();
    assert_eq!(
        c.numbers,
        vec!["+491712345678".to_string(), "+49301234567".to_string()]
    );
    assert_eq!(
        store.counts().await.unwrap().0,
        1,
        "no provisional records created"
    );
}

async fn shared_number_gives_candidates(store: Store) {
    let a = store
        .create_customer(
            &person("Ms", "Eva", "Schulz", Tier::Public),
            &["+49 89 555000"],
        )
        .await
        .unwrap();
    let b = store
        .create_customer(
            &person("Mr", "Jan", "Schulz", Tier::Public),
            &["089 555000", "+49 89 555001"],
        )
        .await
        .unwrap();
    let _other = store
        .create_customer(
            &person("Mr", "Max", "Other", Tier::Public),
            &["+49 89 555002"],
        )
        .await
        .unwrap();
    match store.identify("089555000").await.unwrap() {
        Identification::Candidates { customers } => {
            let ids: Vec<i64> = customers.iter().map(|c| c.id).collect();
            assert_eq!(ids, vec![a, b]);
            assert_eq!(
                customers[1].numbers,
                vec!["+4989555000".to_string(), "+4989555001".to_string()]
            );
        }
        other => panic!("expected candidates, got {other:?}"),
    }
    let pop = store.screen_pop("089555000", None).await.unwrap();
    assert!(pop.view.is_none(), "no view until the agent picks");
    assert_eq!(pop.number.as_deref(), Some("+4989555000"));
}

async fn unknown_number_creates_one_provisional_customer(store: Store) {
    let first = store.identify("040 7654321").await.unwrap();
    let id = match &first {
        Identification::Provisional { customer } => {
            assert!(customer.provisional);
            assert_eq!(customer.numbers, vec!["+49407654321".to_string()]);
            customer.id
        }
        other => panic!("expected provisional, got {other:?}"),
    };
    // The same caller again (another format) finds that record instead of making another.
    match store.identify("+49 40 7654321").await.unwrap() {
        Identification::Provisional { customer } => assert_eq!(customer.id, id),
        other => panic!("expected the same provisional, got {other:?}"),
    }
    assert_eq!(store.counts().await.unwrap().0, 1);
    // The agent completes it: from now on the caller is known.
    store
        .update_customer(id, &person("Mr", "Tom", "Berg", Tier::Public))
        .await
        .unwrap();
    assert_eq!(known_id(&store.identify("0407654321").await.unwrap()), id);
}

async fn concurrent_unknown_calls_create_one_record(store: Store) {
    let calls = (0..6).map(|_| {
        let s = store.clone();
        tokio::spawn(async move { s.identify("+49 221 998877").await })
    });
    let mut ids = Vec::new();
    for c in calls {
        match c.await.unwrap().unwrap() {
            Identification::Provisional { customer } => ids.push(customer.id),
            other => panic!("expected provisional, got {other:?}"),
        }
    }
    ids.dedup();
    assert_eq!(
        ids.len(),
        1,
        "one provisional record for concurrent calls: {ids:?}"
    );
    assert_eq!(store.counts().await.unwrap().0, 1);
}

async fn withheld_and_unusable_ids_touch_nothing(store: Store) {
    for raw in [
        "",
        "  ",
        "anonymous",
        "Anonymous",
        "sip:anonymous@anonymous.invalid",
        "restricted",
        "unavailable",
    ] {
        assert_eq!(
            store.identify(raw).await.unwrap(),
            Identification::Withheld,
            "{raw:?}"
        );
    }
    for raw in [
        "alice",
        "12",
        "+49 30 ABC",
        "\u{0}\u{1}💥",
        &"9".repeat(500),
    ] {
        let got = store.identify(raw).await.unwrap();
        assert!(
            matches!(got, Identification::Unusable { .. }),
            "{raw:?} gave {got:?}"
        );
    }
    let pop = store.screen_pop("anonymous", Some("sales")).await.unwrap();
    assert_eq!(pop.identification, Identification::Withheld);
    assert!(pop.view.is_none() && pop.number.is_none());
    assert_eq!(store.counts().await.unwrap(), (0, 0, 0, 0));
}

fn call(customer_id: i64, n: i64) -> NewInteraction {
    NewInteraction {
        customer_id,
        channel: "voice".into(),
        direction: Direction::Inbound,
        call_id: Some(format!("call-{n}")),
        queue: Some("repairs".into()),
        agent: Some(format!("agent{}", n % 3)),
        started_at: 1_700_000_000_000 + n * 60_000,
        ended_at: Some(1_700_000_000_000 + n * 60_000 + 30_000),
        recording_path: Some(format!("rec/call-{n}.wav")),
        ticket_ids: Vec::new(),
    }
}

async fn view_has_profile_trail_tickets_greeting_and_offer(store: Store) {
    let id = store
        .create_customer(
            &person("Dr.", "Anna", "Weber", Tier::Vip),
            &["+49 30 1234567"],
        )
        .await
        .unwrap();
    // Inserted out of order on purpose: the view must sort by time, not by insertion.
    for n in [5, 1, 12, 3, 7, 0, 9, 11, 2, 8, 4, 10, 6] {
        store.record_interaction(&call(id, n)).await.unwrap();
    }
    let t1 = store
        .create_ticket(
            &NewTicket {
                customer_id: id,
                subject: "Boiler".into(),
                priority: TicketPriority::High,
                assignee: None,
                due_at: None,
                reference: Some("RO-1001".into()),
            },
            "agent1",
        )
        .await
        .unwrap();
    let t2 = store
        .create_ticket(
            &NewTicket {
                customer_id: id,
                subject: "Invoice".into(),
                priority: TicketPriority::Normal,
                assignee: None,
                due_at: None,
                reference: None,
            },
            "agent1",
        )
        .await
        .unwrap();
    let t3 = store
        .create_ticket(
            &NewTicket {
                customer_id: id,
                subject: "Old".into(),
                priority: TicketPriority::Low,
                assignee: None,
                due_at: None,
                reference: None,
            },
            "agent1",
        )
        .await
        .unwrap();
    store
        .update_ticket(
            t3,
            &TicketUpdate {
                status: Some(TicketStatus::Closed),
                ..Default::default()
            },
            "agent2",
        )
        .await
        .unwrap();
    // Touch t1 last so it is the most recently updated open ticket.
    tokio::task::yield_now().await;
    store
        .update_ticket(
            t1,
            &TicketUpdate {
                note: Some("parts ordered".into()),
                ..Default::default()
            },
            "agent2",
        )
        .await
        .unwrap();
    store
        .set_script(None, None, "Hello[ {name}]")
        .await
        .unwrap();
    store
        .set_script(
            Some("repairs"),
            Some(Tier::Vip),
            "Good morning[, {title} {surname}][ — is this about repair order {last_ticket}?]",
        )
        .await
        .unwrap();
    store
        .set_script(Some("repairs"), None, "Repairs, hello")
        .await
        .unwrap();
    let base = Offer {
        id: 0,
        name: String::new(),
        text: String::new(),
        tier: None,
        segment: None,
        min_interactions: None,
        max_open_tickets: None,
        last_disposition: None,
        rank: 0,
    };
    store
        .add_offer(&Offer {
            name: "generic".into(),
            text: "Newsletter".into(),
            rank: 1,
            ..base.clone()
        })
        .await
        .unwrap();
    store
        .add_offer(&Offer {
            name: "vip-upgrade".into(),
            text: "Premium care".into(),
            tier: Some(Tier::Vip),
            min_interactions: Some(10),
            rank: 10,
            ..base.clone()
        })
        .await
        .unwrap();
    store
        .add_offer(&Offer {
            name: "no-complaints".into(),
            text: "Upsell".into(),
            tier: Some(Tier::Vip),
            max_open_tickets: Some(0),
            rank: 20,
            ..base.clone()
        })
        .await
        .unwrap();
    store
        .add_offer(&Offer {
            name: "public-only".into(),
            text: "Starter".into(),
            tier: Some(Tier::Public),
            rank: 30,
            ..base
        })
        .await
        .unwrap();

    let pop = store
        .screen_pop("030/1234567", Some("repairs"))
        .await
        .unwrap();
    assert_eq!(known_id(&pop.identification), id);
    let view = pop.view.expect("view for a known caller");
    assert_eq!(view.customer.id, id);
    assert_eq!(view.customer.data.tier, Tier::Vip);
    let times: Vec<i64> = view.interactions.iter().map(|i| i.started_at).collect();
    let expected: Vec<i64> = (3..=12)
        .rev()
        .map(|n| 1_700_000_000_000 + n * 60_000)
        .collect();
    assert_eq!(times, expected, "last 10 contacts, newest first");
    assert_eq!(
        view.interactions[0].recording_path.as_deref(),
        Some("rec/call-12.wav")
    );
    let open: Vec<i64> = view.open_tickets.iter().map(|t| t.id).collect();
    assert_eq!(open.len(), 2);
    assert!(open.contains(&t1) && open.contains(&t2) && !open.contains(&t3));
    assert!(view.open_tickets[0].updated_at >= view.open_tickets[1].updated_at);
    let last_ref = view.open_tickets[0].reference.clone();
    assert_eq!(
        view.greeting,
        format!("Good morning, Dr. Weber — is this about repair order {last_ref}?")
    );
    let offer = view.offer.expect("an offer applies");
    assert_eq!(
        offer.name, "vip-upgrade",
        "rank 20 needs no open tickets; public-only is for another tier"
    );

    // Another queue falls back to the default script.
    assert_eq!(
        store.view(id, Some("sales")).await.unwrap().greeting,
        "Hello Anna Weber"
    );
}

async fn greeting_degrades_for_provisional_callers(store: Store) {
    store
        .set_script(
            None,
            Some(Tier::Public),
            "Good morning[, {title} {surname}][ — is this about repair order {last_ticket}?]",
        )
        .await
        .unwrap();
    let pop = store
        .screen_pop("+44 20 7946 0958", Some("repairs"))
        .await
        .unwrap();
    assert!(matches!(
        pop.identification,
        Identification::Provisional { .. }
    ));
    let view = pop.view.expect("provisional callers get a view");
    assert_eq!(view.greeting, "Good morning");
    assert!(view.interactions.is_empty() && view.open_tickets.is_empty() && view.offer.is_none());
}

async fn interaction_then_disposition_lands_in_trail(store: Store) {
    let id = store
        .create_customer(
            &person("Ms", "Ida", "Lang", Tier::KeyAccount),
            &["+49 30 111222"],
        )
        .await
        .unwrap();
    let t = store
        .create_ticket(
            &NewTicket {
                customer_id: id,
                subject: "Fault".into(),
                priority: TicketPriority::Urgent,
                assignee: Some("agent7".into()),
                due_at: Some(1_800_000_000_000),
                reference: None,
            },
            "agent7",
        )
        .await
        .unwrap();
    let mut i = call(id, 42);
    i.ticket_ids = vec![t];
    let iid = store.record_interaction(&i).await.unwrap();
    store
        .wrap_up(iid, "resolved_first_call", Some("reset the router"))
        .await
        .unwrap();
    let got = store
        .interaction_by_call_id("call-42")
        .await
        .unwrap()
        .expect("recorded");
    assert_eq!(got.id, iid);
    assert_eq!(got.disposition.as_deref(), Some("resolved_first_call"));
    assert_eq!(got.notes.as_deref(), Some("reset the router"));
    assert_eq!(got.recording_path.as_deref(), Some("rec/call-42.wav"));
    assert_eq!(got.queue.as_deref(), Some("repairs"));
    assert_eq!(got.ended_at, Some(i.ended_at.unwrap()));
    assert_eq!(got.ticket_ids, vec![t]);
    let trail = store.trail(id, 10).await.unwrap();
    assert_eq!(trail.len(), 1);
    assert_eq!(trail[0].ticket_ids, vec![t]);
    assert!(matches!(
        store.wrap_up(iid + 1000, "x", None).await,
        Err(Error::NotFound(Entity::Interaction(_)))
    ));
    let mut orphan = call(id + 1000, 1);
    orphan.call_id = None;
    assert!(matches!(
        store.record_interaction(&orphan).await,
        Err(Error::NotFound(Entity::Customer(_)))
    ));
    let mut bad_link = call(id, 2);
    bad_link.ticket_ids = vec![t + 1000];
    assert!(matches!(
        store.record_interaction(&bad_link).await,
        Err(Error::NotFound(Entity::Ticket(_)))
    ));
    assert_eq!(
        store.counts().await.unwrap().2,
        1,
        "failed writes left nothing behind"
    );
}

async fn tickets_keep_history(store: Store) {
    let id = store
        .create_customer(&person("Mr", "Ole", "Hansen", Tier::Public), &[])
        .await
        .unwrap();
    let t = store
        .create_ticket(
            &NewTicket {
                customer_id: id,
                subject: "Leak".into(),
                priority: TicketPriority::Normal,
                assignee: None,
                due_at: None,
                reference: None,
            },
            "agent1",
        )
        .await
        .unwrap();
    let ticket = store.ticket(t).await.unwrap().unwrap();
    assert_eq!(ticket.reference, format!("T-{t}"));
    assert_eq!(ticket.status, TicketStatus::Open);
    store
        .update_ticket(
            t,
            &TicketUpdate {
                status: Some(TicketStatus::InProgress),
                assignee: Some(Some("tech9".into())),
                note: Some("technician booked".into()),
                ..Default::default()
            },
            "agent2",
        )
        .await
        .unwrap();
    // A no-op update writes no history.
    store
        .update_ticket(
            t,
            &TicketUpdate {
                status: Some(TicketStatus::InProgress),
                ..Default::default()
            },
            "agent2",
        )
        .await
        .unwrap();
    store
        .update_ticket(
            t,
            &TicketUpdate {
                status: Some(TicketStatus::Resolved),
                priority: Some(TicketPriority::Low),
                ..Default::default()
            },
            "tech9",
        )
        .await
        .unwrap();
    let h = store.ticket_history(t).await.unwrap();
    let lines: Vec<(&str, &str)> = h
        .iter()
        .map(|e| (e.actor.as_str(), e.change.as_str()))
        .collect();
    assert_eq!(
        lines,
        vec![
            ("agent1", "created: Leak (normal)"),
            ("agent2", "status: open → in_progress"),
            ("agent2", "assignee: - → tech9"),
            ("agent2", "note: technician booked"),
            ("tech9", "status: in_progress → resolved"),
            ("tech9", "priority: normal → low"),
        ]
    );
    let ticket = store.ticket(t).await.unwrap().unwrap();
    assert_eq!(
        (ticket.status, ticket.priority, ticket.assignee.as_deref()),
        (TicketStatus::Resolved, TicketPriority::Low, Some("tech9"))
    );
    assert!(
        store.view(id, None).await.unwrap().open_tickets.is_empty(),
        "resolved tickets are not open"
    );
    assert!(matches!(
        store
            .update_ticket(t + 99, &TicketUpdate::default(), "x")
            .await,
        Err(Error::NotFound(Entity::Ticket(_)))
    ));
}

async fn concurrent_ticket_updates_form_one_history(store: Store) {
    let id = store
        .create_customer(&person("Ms", "Uta", "Kern", Tier::Public), &[])
        .await
        .unwrap();
    let t = store
        .create_ticket(
            &NewTicket {
                customer_id: id,
                subject: "Fault".into(),
                priority: TicketPriority::Normal,
                assignee: None,
                due_at: None,
                reference: None,
            },
            "a0",
        )
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8)
        .map(|k| {
            let s = store.clone();
            let status = if k % 2 == 0 {
                TicketStatus::InProgress
            } else {
                TicketStatus::Waiting
            };
            tokio::spawn(async move {
                s.update_ticket(
                    t,
                    &TicketUpdate {
                        status: Some(status),
                        ..Default::default()
                    },
                    &format!("a{k}"),
                )
                .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    // Each transition starts where the previous one ended: no update saw a stale status.
    let mut status = "open".to_string();
    for e in store.ticket_history(t).await.unwrap().iter().skip(1) {
        let rest = e
            .change
            .strip_prefix("status: ")
            .expect("only status changes");
        let (from, to) = rest.split_once(" → ").expect("from → to");
        assert_eq!(from, status, "history {:?}", e);
        status = to.to_string();
    }
    assert_eq!(
        store.ticket(t).await.unwrap().unwrap().status.as_str(),
        status
    );
}

async fn update_and_search_customers(store: Store) {
    let a = store
        .create_customer(
            &person("Ms", "Anna", "Müller", Tier::Public),
            &["+49 30 5550001"],
        )
        .await
        .unwrap();
    let b = store
        .create_customer(
            &person("Mr", "Bernd", "Müller-Lüdenscheid", Tier::Public),
            &["+49 30 5550002"],
        )
        .await
        .unwrap();
    let _c = store
        .create_customer(
            &person("Mr", "Carl", "Mayer", Tier::Public),
            &["+49 40 5550003"],
        )
        .await
        .unwrap();
    let ids = |v: Vec<CustomerSummary>| v.into_iter().map(|s| s.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.search_customers("MÜLLER", 10).await.unwrap()),
        vec![a, b]
    );
    assert_eq!(
        ids(store.search_customers("müller anna", 10).await.unwrap()),
        vec![a]
    );
    assert_eq!(
        ids(store.search_customers("+49305550", 10).await.unwrap()).len(),
        2
    );
    assert_eq!(
        ids(store.search_customers("030 5550002", 10).await.unwrap()),
        vec![b]
    );
    assert_eq!(
        store.search_customers("m", 1).await.unwrap().len(),
        1,
        "bounded by the limit"
    );
    assert!(
        store.search_customers("%", 10).await.unwrap().is_empty(),
        "no wildcard semantics"
    );
    let mut data = person("Prof.", "Anna", "Schmidt", Tier::KeyAccount);
    data.custom_fields = serde_json::json!({"contract": "K-77", "pets": 2});
    data.account_manager = Some("Lisa".into());
    store.update_customer(a, &data).await.unwrap();
    let c = store.customer(a).await.unwrap().unwrap();
    assert_eq!(c.data, data);
    assert_eq!(
        ids(store.search_customers("schmidt", 10).await.unwrap()),
        vec![a]
    );
    let mut bad = data.clone();
    bad.custom_fields = serde_json::json!([1, 2]);
    assert!(matches!(
        store.update_customer(a, &bad).await,
        Err(Error::Invalid {
            field: "custom_fields",
            ..
        })
    ));
    assert!(matches!(
        store.update_customer(a + 99, &data).await,
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        store.create_customer(&data, &["not a number"]).await,
        Err(Error::BadNumber(_))
    ));
}

async fn audit_log_keeps_who_what_and_denials(store: Store) {
    let a = store
        .create_customer(
            &person("Ms", "Eva", "Roth", Tier::Public),
            &["+49301111111"],
        )
        .await
        .unwrap();
    for (actor, action, allowed) in [("bob", "pop", true), ("carol", "read", false)] {
        store
            .audit(&NewAuditEntry {
                actor: actor.into(),
                action: action.into(),
                customer_id: Some(a),
                allowed,
                detail: "call c1".into(),
            })
            .await
            .unwrap();
    }
    store
        .audit(&NewAuditEntry {
            actor: "sup".into(),
            action: "search".into(),
            customer_id: None,
            allowed: true,
            detail: "roth".into(),
        })
        .await
        .unwrap();
    let of_a = store.audit_log(Some(a), 10).await.unwrap();
    assert_eq!(of_a.len(), 2);
    assert_eq!(of_a[0].actor, "carol", "newest first");
    assert!(!of_a[0].allowed);
    assert_eq!(of_a[1].action, "pop");
    assert!(of_a[1].at > 0);
    assert_eq!(store.audit_log(None, 10).await.unwrap().len(), 3);
}

on_both_backends!(
    audit_log_keeps_who_what_and_denials,
    identifies_one_customer_from_any_formatting,
    shared_number_gives_candidates,
    unknown_number_creates_one_provisional_customer,
    concurrent_unknown_calls_create_one_record,
    withheld_and_unusable_ids_touch_nothing,
    view_has_profile_trail_tickets_greeting_and_offer,
    greeting_degrades_for_provisional_callers,
    interaction_then_disposition_lands_in_trail,
    tickets_keep_history,
    concurrent_ticket_updates_form_one_history,
    update_and_search_customers,
);

/// `Store::open` picks the backend from the location and refuses what it cannot serve.
#[tokio::test]
async fn open_dispatches_on_location() {
    let dir = std::env::temp_dir().join(format!("hotline_crm_open_{}", std::process::id()));
    let path = dir.join("nested").join("crm.sqlite");
    let config = StoreConfig {
        durability: Durability::Full,
        ..StoreConfig::default()
    };
    let s = Store::open(path.to_str().unwrap(), &config).await.unwrap();
    assert_eq!(s.backend(), Backend::Sqlite);
    s.close().await;
    assert!(path.exists(), "parent directories are created");
    let s = Store::open(&format!("sqlite:{}", path.display()), &config)
        .await
        .unwrap();
    assert_eq!(s.backend(), Backend::Sqlite);
    s.close().await;
    let _ = std::fs::remove_dir_all(&dir);
    // postgres:// URLs: every PostgreSQL test opens its store through `Store::open`.
    for bad in ["", "http://example.invalid/db", "mysql://localhost/x"] {
        assert!(
            matches!(Store::open(bad, &config).await, Err(Error::BadLocation(_))),
            "{bad:?}"
        );
    }
    let bad_region = StoreConfig {
        default_region: "ZZ".into(),
        ..StoreConfig::default()
    };
    assert!(matches!(
        Store::open(path.to_str().unwrap(), &bad_region).await,
        Err(Error::BadRegion(_))
    ));
}
