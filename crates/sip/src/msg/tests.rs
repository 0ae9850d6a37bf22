//! The message layer: proofs that the gaps of plain rsip are closed by `rsipstack::sip`
//! (or by this module), and RFC 4475 torture classes at the parser level.

use super::*;

fn req(text: &str) -> Request {
    match parse(text.as_bytes(), &Limits::default(), true) {
        Ok(SipMessage::Request(r)) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn err(text: &str) -> String {
    match parse(text.as_bytes(), &Limits::default(), true) {
        Err(e) => e.to_string(),
        Ok(m) => panic!("expected an error, parsed {m:?}"),
    }
}

const BASE: &str = "From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n";

#[test]
fn ipv6_literals_in_request_uri_via_and_contact() {
    let r = req(&format!(
        "INVITE sip:bob@[2001:db8::10]:5070 SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::9]:5062;branch=z9hG4bK-6\r\n{BASE}Contact: <sip:a@[2001:db8::9]:5062>\r\nContent-Length: 0\r\n\r\n"
    ));
    assert_eq!(
        r.uri.host().to_string().trim_matches(['[', ']']),
        "2001:db8::10"
    );
    assert!(matches!(
        r.uri.host(),
        rsip::Host::IpAddr(std::net::IpAddr::V6(_))
    ));
    assert_eq!(r.uri.host_with_port.port.map(u16::from), Some(5070));
    let via = rsip::typed::Via::parse(top_via(&r.headers).unwrap()).unwrap();
    assert!(matches!(
        via.sent_by().host,
        rsip::Host::IpAddr(std::net::IpAddr::V6(_))
    ));
    let (sent_by, _) = via_sent_by(top_via(&r.headers).unwrap()).unwrap();
    assert_eq!(hostport_host(sent_by), "2001:db8::9");
    assert_eq!(hostport_port(sent_by), Some(5062));
    let contact = find(&r.headers, |h| matches!(h, Header::Contact(_))).unwrap();
    let c = rsip::typed::Contact::parse(contact).unwrap();
    assert!(matches!(
        c.uri.host(),
        rsip::Host::IpAddr(std::net::IpAddr::V6(_))
    ));
}

#[test]
fn compact_header_forms() {
    let r = req(
        "INVITE sip:bob@example.com SIP/2.0\r\nv: SIP/2.0/UDP h:5060;branch=z9hG4bK-c\r\ni: compact-1\r\nf: <sip:a@example.com>;tag=9\r\nt: <sip:bob@example.com>\r\nm: <sip:a@h>\r\nCSeq: 1 INVITE\r\nc: application/sdp\r\nl: 3\r\n\r\nabc",
    );
    assert_eq!(call_id(&r.headers), Some("compact-1"));
    assert_eq!(from_value(&r.headers).and_then(tag), Some("9"));
    assert_eq!(to_value(&r.headers), Some("<sip:bob@example.com>"));
    assert_eq!(branch(top_via(&r.headers).unwrap()), Some("z9hG4bK-c"));
    assert!(r.headers.iter().any(|h| matches!(h, Header::Contact(_))));
    assert!(
        r.headers
            .iter()
            .any(|h| matches!(h, Header::ContentType(_)))
    );
    assert_eq!(r.body, b"abc");
}

#[test]
fn via_with_space_before_colon() {
    let r = req(&format!(
        "OPTIONS sip:x@example.com SIP/2.0\r\nVia  : SIP/2.0/UDP h:5060;branch=z9hG4bK-s\r\n{}\r\n",
        BASE.replace("INVITE", "OPTIONS") + "Content-Length: 0\r\n"
    ));
    assert_eq!(branch(top_via(&r.headers).unwrap()), Some("z9hG4bK-s"));
}

#[test]
fn tel_uris() {
    let r = req(&format!(
        "INVITE tel:+15551234567;phone-context=example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-t\r\n{}",
        BASE.replace("<sip:b@example.com>", "<tel:+15551234567>") + "Content-Length: 0\r\n\r\n"
    ));
    assert!(
        r.uri.to_string().starts_with("tel:+15551234567"),
        "{}",
        r.uri
    );
    assert_eq!(addr_uri(to_value(&r.headers).unwrap()), "tel:+15551234567");
}

/// Gap still open in rsipstack 0.7.14: its `Algorithm` only knows `SHA256` (no hyphen),
/// not the RFC 7616 / RFC 8760 token `SHA-256`, so typed Authorization parsing fails.
/// Worked around: credentials are parsed by `crate::auth::parse_credentials`.
#[test]
fn authorization_with_algorithm_sha256() {
    let v = "Digest username=\"alice\", realm=\"hotline\", nonce=\"abc\", uri=\"sip:hotline\", response=\"00\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"x\"";
    assert!(
        rsip::typed::Authorization::parse(v).is_err(),
        "rsipstack fixed SHA-256: drop the workaround"
    );
    let ours = crate::auth::parse_credentials(v).unwrap();
    assert_eq!(ours.algorithm, Some("SHA-256"));
    assert_eq!(
        crate::auth::Algorithm::from_name(ours.algorithm.unwrap()),
        Some(crate::auth::Algorithm::Sha256)
    );
}

/// rsip's typed Authorization keeps `nc` in a u8: the 256th request on one nonce fails to
/// parse. Our own credentials parser (crate::auth) is used instead; this documents why.
#[test]
fn rsip_typed_authorization_rejects_nc_above_255() {
    let v = "Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"sip:h\", response=\"00\", qop=auth, nc=00000100, cnonce=\"x\"";
    assert!(rsip::typed::Authorization::parse(v).is_err());
    assert_eq!(
        crate::auth::parse_credentials(v).unwrap().nc,
        Some("00000100")
    );
}

#[test]
fn comma_joined_via_keeps_every_hop() {
    let text = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP proxy:5060;branch=z9hG4bK-p, SIP/2.0/UDP [2001:db8::1]:5062;branch=z9hG4bK-u;rport=5062, SIP/2.0/TCP c:5060;branch=z9hG4bK-c\r\n{}Content-Length: 0\r\n\r\n",
        BASE
    );
    let SipMessage::Response(mut r) = parse(text.as_bytes(), &Limits::default(), true).unwrap()
    else {
        panic!()
    };
    assert_eq!(branch(top_via(&r.headers).unwrap()), Some("z9hG4bK-p"));
    pop_top_via(&mut r.headers);
    assert_eq!(branch(top_via(&r.headers).unwrap()), Some("z9hG4bK-u"));
    let out = String::from_utf8(response_bytes(&r)).unwrap();
    assert!(
        out.contains("Via: SIP/2.0/UDP [2001:db8::1]:5062;branch=z9hG4bK-u;rport=5062, SIP/2.0/TCP c:5060;branch=z9hG4bK-c\r\n"),
        "{out}"
    );
    pop_top_via(&mut r.headers);
    pop_top_via(&mut r.headers);
    assert_eq!(top_via(&r.headers), None);
}

#[test]
fn received_and_rport_are_stamped_rfc3581() {
    let mut r = req(&format!(
        "OPTIONS sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.5:5060;rport;branch=z9hG4bK-n, SIP/2.0/UDP other;branch=z9hG4bK-o\r\n{}Content-Length: 0\r\n\r\n",
        BASE.replace("INVITE", "OPTIONS")
    ));
    stamp_received(&mut r, "203.0.113.7:40123".parse().unwrap());
    let via = find(&r.headers, |h| matches!(h, Header::Via(_))).unwrap();
    assert_eq!(
        via,
        "SIP/2.0/UDP 10.0.0.5:5060;branch=z9hG4bK-n;received=203.0.113.7;rport=40123, SIP/2.0/UDP other;branch=z9hG4bK-o"
    );
}

// ---- RFC 4475 classes -------------------------------------------------------------

#[test]
fn torture_line_folding_and_odd_whitespace() {
    // After RFC 4475 §3.1.1.1 (wsinv): folded and tab-separated header values.
    let r = req(
        "INVITE sip:vivekg@chair-dnrc.example.com SIP/2.0\r\nTO :\r\n sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n\r\nfrom   : \"J Rosenberg \\\\\\\"\"       <sip:jdrosen@example.com>\r\n  ;\r\n  tag = 98asjd8\r\nMaX-fOrWaRdS: 0068\r\nCall-ID: wsinv.ndaksdj@192.0.2.1\r\nContent-Length   : 0\r\ncseq: 0009\r\n  INVITE\r\nVia  : SIP  /   2.0\r\n  /UDP\r\n    192.0.2.2;branch=390skdjuw\r\ns :\r\nNewFangledHeader:   newfangled value\r\n continued newfangled value\r\nm:\"Quoted string \\\"\\\"\" <sip:jdrosen@example.com> ; newparam =\r\n      newvalue ;\r\n  secondparam ; q = 0.33\r\n\r\n",
    );
    assert_eq!(cseq(&r.headers), Some((9, "INVITE")));
    assert_eq!(call_id(&r.headers), Some("wsinv.ndaksdj@192.0.2.1"));
    let other = r
        .headers
        .iter()
        .find_map(|h| match h {
            Header::Other(n, v) if n == "NewFangledHeader" => Some(v.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(other, "newfangled value continued newfangled value");
}

#[test]
fn torture_escaped_uri_user() {
    // RFC 4475 §3.1.1.2 (intmeth-like escaping in the user part).
    let r = req(&format!(
        "OPTIONS sip:sips%3Auser%40example.com@example.net SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-e\r\n{}Content-Length: 0\r\n\r\n",
        BASE.replace("INVITE", "OPTIONS")
    ));
    assert_eq!(r.uri.user(), Some("sips%3Auser%40example.com"));
}

/// Gap in rsipstack 0.7.14: `Method` has no extension variant, so a request with an
/// unknown method cannot be represented. We detect it and answer 501 (see the core tests).
#[test]
fn torture_unknown_method_is_recognised_as_unsupported() {
    let m = format!(
        "NEWMETHOD sip:user@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-m\r\n{}Content-Length: 0\r\n\r\n",
        BASE.replace("1 INVITE", "8 NEWMETHOD")
    );
    assert!(matches!(
        parse(m.as_bytes(), &Limits::default(), true),
        Err(Error::UnsupportedMethod(ref x)) if x == "NEWMETHOD"
    ));
}

#[test]
fn torture_wrong_content_length() {
    let head = format!(
        "INVITE sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-l\r\n{BASE}"
    );
    assert_eq!(
        err(&format!("{head}Content-Length: 9999\r\n\r\nv=0\r\n")),
        "Content-Length exceeds body"
    );
    assert_eq!(
        err(&format!("{head}Content-Length: -5\r\n\r\n")),
        "Invalid Content-Length"
    );
    assert_eq!(
        err(&format!(
            "{head}Content-Length: 99999999999999999999999\r\n\r\n"
        )),
        "Invalid Content-Length"
    );
    // Shorter than the datagram: the rest is ignored (§18.3).
    let r = req(&format!("{head}Content-Length: 2\r\n\r\nabcdef"));
    assert_eq!(r.body, b"ab");
    // No Content-Length on UDP: the body runs to the end of the datagram.
    let r = req(&format!("{head}\r\nabc"));
    assert_eq!(r.body, b"abc");
}

#[test]
fn torture_duplicate_single_valued_headers() {
    let m = format!(
        "INVITE sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-d\r\n{BASE}Call-ID: second\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(err(&m), "Duplicate call-id header");
    let m = format!(
        "INVITE sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-d\r\n{BASE}l: 0\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(err(&m), "Duplicate content-length header");
}

#[test]
fn torture_missing_mandatory_headers() {
    for (name, drop) in [
        ("Call-ID", "Call-ID: c1\r\n"),
        ("From", "From: <sip:a@example.com>;tag=1\r\n"),
        ("CSeq", "CSeq: 1 INVITE\r\n"),
    ] {
        let m = format!(
            "INVITE sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-x\r\n{}Content-Length: 0\r\n\r\n",
            BASE.replace(drop, "")
        );
        assert_eq!(err(&m), format!("Missing {name} header"));
    }
    let m = format!("INVITE sip:x@example.com SIP/2.0\r\n{BASE}Content-Length: 0\r\n\r\n");
    assert_eq!(err(&m), "Missing Via header");
}

#[test]
fn torture_bad_values() {
    let head = "INVITE sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-b\r\n";
    let m = format!(
        "{head}{}Content-Length: 0\r\n\r\n",
        BASE.replace("1 INVITE", "1 OPTIONS")
    );
    assert_eq!(err(&m), "CSeq method mismatch");
    let m = format!(
        "{head}{}Content-Length: 0\r\n\r\n",
        BASE.replace("1 INVITE", "x INVITE")
    );
    assert_eq!(err(&m), "Invalid CSeq");
    let m = format!(
        "{head}{}Content-Length: 0\r\n\r\n",
        BASE.replace("Max-Forwards: 70", "Max-Forwards: 300")
    );
    assert_eq!(err(&m), "Invalid Max-Forwards");
    let m = format!(
        "INVITE sip:x@example.com SIP/2.0\r\nVia: garbage\r\n{BASE}Content-Length: 0\r\n\r\n"
    );
    assert_eq!(err(&m), "Invalid Via");
    let m = format!("{head}{BASE}this line has no colon\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(err(&m), "Malformed header line");
}

#[test]
fn torture_non_utf8_and_huge_values() {
    let mut m = format!(
        "INVITE sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-u\r\n{BASE}"
    )
    .into_bytes();
    m.extend_from_slice(b"Subject: \xff\xfe\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(
        parse(&m, &Limits::default(), true).unwrap_err().to_string(),
        "Header not UTF-8"
    );
    let huge = format!(
        "INVITE sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-h\r\n{BASE}Subject: {}\r\nContent-Length: 0\r\n\r\n",
        "x".repeat(70_000)
    );
    assert!(matches!(
        parse(huge.as_bytes(), &Limits::default(), true),
        Err(Error::TooLarge(_))
    ));
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let m = format!(
        "INVITE sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-m\r\n{BASE}{many}Content-Length: 0\r\n\r\n"
    );
    assert!(matches!(
        parse(m.as_bytes(), &Limits::default(), true),
        Err(Error::TooManyHeaders)
    ));
}

#[test]
fn raw_error_response_copies_the_transaction_headers() {
    let m = b"INVITE sip:x@example.com SIP/2.0\r\nv: SIP/2.0/UDP h:5060;branch=z9hG4bK-r\r\nVia: SIP/2.0/UDP g;branch=z9hG4bK-g\r\nf: <sip:a@example.com>;tag=1\r\nt: <sip:b@example.com>\r\ni: c1\r\nCSeq: 1 INVITE\r\nContent-Length: 10000\r\n\r\n";
    let r =
        String::from_utf8(raw_error_response(m, 400, "Content-Length\r\nexceeds body").unwrap())
            .unwrap();
    assert!(
        r.starts_with("SIP/2.0 400 Content-Length  exceeds body\r\n"),
        "{r}"
    );
    assert!(
        r.contains(
            "Via: SIP/2.0/UDP h:5060;branch=z9hG4bK-r\r\nVia: SIP/2.0/UDP g;branch=z9hG4bK-g\r\n"
        ),
        "{r}"
    );
    assert!(r.contains("To: <sip:b@example.com>;tag=hl-err\r\n"), "{r}");
    assert!(r.contains("Call-ID: c1\r\nCSeq: 1 INVITE\r\n"), "{r}");
    // A response is never answered, and without Call-ID nothing can be formed.
    assert!(raw_error_response(b"SIP/2.0 200 OK\r\nVia: x\r\n\r\n", 400, "x").is_none());
    assert!(
        raw_error_response(
            b"INVITE sip:x SIP/2.0\r\nVia: x\r\nFrom: a\r\nTo: b\r\nCSeq: 1 INVITE\r\n\r\n",
            400,
            "x"
        )
        .is_none()
    );
}

#[test]
fn serialization_has_exactly_one_content_length() {
    let r = req(&format!(
        "MESSAGE sip:x@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK-s\r\n{}l: 5\r\n\r\nhello",
        BASE.replace("1 INVITE", "1 MESSAGE")
    ));
    let out = String::from_utf8(request_bytes(&r)).unwrap();
    assert_eq!(out.matches("Content-Length").count(), 1, "{out}");
    assert!(out.ends_with("Content-Length: 5\r\n\r\nhello"), "{out}");
    let again = req(&out);
    assert_eq!(again.body, b"hello");
}

#[test]
fn split_first_respects_quotes_and_angle_brackets() {
    assert_eq!(
        split_first("\"a,b\" <sip:x>;p=1, <sip:y>"),
        ("\"a,b\" <sip:x>;p=1", Some("<sip:y>"))
    );
    assert_eq!(split_first("<sip:x;a=1,2>"), ("<sip:x;a=1,2>", None));
    assert_eq!(param("<sip:x;tag=no>;tag=yes", "tag"), Some("yes"));
    assert_eq!(param("sip:x;lr", "lr"), Some(""));
}

/// JsSIP's Contact: a quoted `<urn:uuid:...>` parameter after the URI must not be taken
/// for the end of the URI, nor hide the parameters around it.
#[test]
fn contact_with_a_quoted_angle_bracket_parameter() {
    let v = "<sip:qob7n4a7@bdic8unqguhu.invalid;transport=ws>;+sip.ice;reg-id=1;+sip.instance=\"<urn:uuid:497f2aae>\";expires=300";
    assert_eq!(
        addr_uri(v),
        "sip:qob7n4a7@bdic8unqguhu.invalid;transport=ws"
    );
    assert_eq!(param(v, "expires"), Some("300"));
    assert_eq!(param(v, "reg-id"), Some("1"));
    let before = "<sip:a@b>;expires=60;+sip.instance=\"<urn:uuid:1>\"";
    assert_eq!(param(before, "expires"), Some("60"));
    // A display name may hold brackets in quotes.
    let named = "\"A <b> \\\" c\" <sip:x@y>;tag=1";
    assert_eq!(addr_uri(named), "sip:x@y");
    assert_eq!(tag(named), Some("1"));
}

#[test]
fn head_lines_split_at_crlf_only() {
    for head in [
        "",
        "a",
        "a\r\nb",
        "a\r\n",
        "\r\n\r\n",
        "a\nb\r\nc",
        "\n\r\n\r",
        "a\r\r\nb\n",
        "INVITE sip:x SIP/2.0\r\nVia: v\r\n f\r\nTo: t",
    ] {
        let ours: Vec<&str> = crlf_lines(head).collect();
        let std: Vec<&str> = head.split("\r\n").collect();
        assert_eq!(ours, std, "{head:?}");
    }
}

#[test]
fn known_headers_by_any_case_and_compact_form() {
    for (name, want) in [
        ("Call-ID", Some(0)),
        ("i", Some(0)),
        ("CSEQ", Some(1)),
        ("f", Some(2)),
        ("To", Some(3)),
        ("Max-Forwards", Some(4)),
        ("CONTENT-LENGTH", Some(5)),
        ("l", Some(5)),
        ("c", Some(6)),
        ("Via", Some(VIA)),
        ("v", Some(VIA)),
        ("Contact", None),
        ("Content-Lengthx", None),
        ("", None),
    ] {
        assert_eq!(known_header(name), want, "{name}");
    }
}

#[test]
fn own_messages_parse_without_via() {
    let text = "BYE sip:a@192.0.2.1:5060 SIP/2.0\r\nFrom: <sip:4000@h>;tag=x\r\nTo: <sip:a@h>;tag=y\r\nCall-ID: c9\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n";
    let Ok(SipMessage::Request(r)) = parse_own(text.as_bytes()) else {
        panic!("our BYE parses");
    };
    assert_eq!(r.method, Method::Bye);
    assert_eq!(call_id(&r.headers), Some("c9"));
    assert_eq!(cseq(&r.headers), Some((2, "BYE")));
    assert!(top_via(&r.headers).is_none());
    assert!(r.body.is_empty());
    // The network's messages still need one.
    assert!(parse(text.as_bytes(), &Limits::default(), true).is_err());
}

/// The names in `SINGLE` and `CONTENT_LENGTH` follow `known_header`'s numbering (one
/// table of forms, the other of names: they must agree).
#[test]
fn single_header_names_follow_known_header_numbering() {
    for (i, name) in SINGLE.iter().enumerate() {
        assert_eq!(known_header(name), Some(i), "{name}");
        assert_eq!(known_header(&name.to_ascii_uppercase()), Some(i), "{name}");
    }
    assert_eq!(SINGLE[CONTENT_LENGTH], "content-length");
    for (i, name) in MUST {
        assert_eq!(SINGLE[i], name.to_ascii_lowercase());
    }
}
