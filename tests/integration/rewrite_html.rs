//! HTML: which links are found, how they are parsed, and what is left alone.

use crate::common::*;

fn html_message(html: &str) -> Vec<u8> {
    crlf(&format!(
        "From: news@example.org\nTo: alice@example.com\nSubject: html\nMIME-Version: 1.0\nContent-Type: text/html; charset=utf-8\n\n{html}\n"
    ))
}

fn only_html(message: &[u8]) -> String {
    let bodies = text_bodies(message);
    assert_eq!(bodies.len(), 1);
    bodies.into_iter().next().unwrap().1
}

#[test]
fn every_link_element_is_rewritten_and_the_rest_is_left_alone() {
    let p = Portcullis::new();
    let html = r##"<html><head><meta http-equiv="refresh" content="5; url=https://refresh.example/r"></head><body>
<a href="https://a.example/x?y=1&amp;z=2">a</a> <area shape="rect" href='https://area.example/'>
<form action="https://form.example/post" method="post"><input name="q"></form>
<!--[if mso]><v:roundrect xmlns:v="urn:schemas-microsoft-com:vml" href="https://vml.example/button" style="height:40px"><w:anchorlock/><center>Go</center></v:roundrect><![endif]-->
<img src="https://img.example/pixel.gif"> <link rel="stylesheet" href="https://css.example/s.css">
<a href="mailto:a@example.org">m</a> <a href="tel:+15551234">t</a> <a href="cid:part1@x">c</a>
<a href="data:text/html,hi">d</a> <a href="#top">f</a> <a href="javascript:alert(1)">j</a>
</body></html>"##;
    let (out, report, destinations) = rewrite_and_decode(&p, &html_message(html), &[]);
    assert_eq!(
        destinations,
        [
            "https://refresh.example/r",
            "https://a.example/x?y=1&z=2",
            "https://area.example/",
            "https://form.example/post",
            "https://vml.example/button",
        ]
    );
    let text = only_html(&out);
    assert!(text.contains(r#"<img src="https://img.example/pixel.gif">"#));
    assert!(text.contains(r#"href="https://css.example/s.css""#));
    assert_only_links_changed(&only_html(&html_message(html)), &text);
    assert_eq!(report["links_skipped"]["scheme"], 5, "{report}");
    assert_eq!(report["links_skipped"]["fragment"], 1);
    assert_eq!(report["links_rewritten"], 5);
}

#[test]
fn links_are_parsed_as_a_browser_parses_them() {
    let p = Portcullis::new();
    let html = "<a href=\"HTTP://Upper.Example/A\">1</a>\
<a href=\"ht\ttp://tab.exam\nple/p\">2</a>\
<a href=\"https:\\\\back.example\\slash\">3</a>\
<a href=\"//proto.example/rel\">4</a>\
<a href=\"  https://space.example/  \">5</a>\
<a href=\"&#104;ttps://entity.example/?a=1&amp;b=2\">6</a>\
<a href=https://unquoted.example/u>7</a>";
    let (_, _, destinations) = rewrite_and_decode(&p, &html_message(html), &[]);
    assert_eq!(
        destinations,
        [
            "http://upper.example/A",
            "http://tab.example/p",
            "https://back.example/slash",
            "https://proto.example/rel",
            "https://space.example/",
            "https://entity.example/?a=1&b=2",
            "https://unquoted.example/u",
        ]
    );
}

#[test]
fn base_href_cannot_hide_links() {
    // baseStriker: relative links resolved by the mail client against a hostile <base>.
    let p = Portcullis::new();
    let html = r#"<html><head><base href="http://evil.example/kit/"></head><body>
<a href="login.php">Sign in</a> <a href="/reset">Reset</a> <a href="https://fine.example/">ok</a></body></html>"#;
    let (_, report, destinations) = rewrite_and_decode(&p, &html_message(html), &[]);
    assert_eq!(
        destinations,
        [
            "http://evil.example/kit/login.php",
            "http://evil.example/reset",
            "https://fine.example/"
        ]
    );
    assert!(report["links_skipped"].get("relative").is_none());

    // Without a base, relative links are left alone and counted.
    let (_, report) = p.rewrite(&html_message(r#"<a href="login.php">x</a>"#), &[]);
    assert_eq!(report["links_skipped"]["relative"], 1);
    assert_eq!(report["links_rewritten"], 0);
}

#[test]
fn own_links_are_never_wrapped_twice() {
    let p = Portcullis::new();
    let (once, report) = p.rewrite(
        &html_message(r#"<a href="https://a.example/">a</a> see https://b.example/"#),
        &[],
    );
    // The URL written as text is one a mail client makes clickable: rewritten in place too.
    assert_eq!(report["links_rewritten"], 2);
    let (twice, report) = p.rewrite(&once, &[]);
    assert_eq!(report["links_rewritten"], 0);
    assert_eq!(report["links_skipped"]["ours"], 2);
    assert_eq!(once, twice);
}

#[test]
fn do_not_rewrite_list_with_wildcards() {
    let p = Portcullis::new();
    let config =
        p.write_config("[rewrite]\ndo_not_rewrite = [\"*.intranet.example/*\", \"partner.example/public/*\"]\n");
    let html = r#"<a href="https://wiki.intranet.example/page">1</a><a href="https://intranet.example/">2</a>
<a href="https://partner.example/public/doc">3</a><a href="https://partner.example/private">4</a>
<a href="https://intranet.example.evil/">5</a>"#;
    let (_, report, destinations) =
        rewrite_and_decode(&p, &html_message(html), &["--config", config.to_str().unwrap()]);
    // `--config` comes after the subcommand here; clap takes global options anywhere.
    assert_eq!(
        destinations,
        ["https://partner.example/private", "https://intranet.example.evil/"]
    );
    assert_eq!(report["links_skipped"]["do-not-rewrite"], 3);
}

#[test]
fn foreign_wrappers_are_wrapped_as_is_or_unwrapped() {
    let p = Portcullis::new();
    let wrapped = "https://urldefense.com/v3/__https://example.com/*newsletter__;Iw!!foo!bar$";
    let html = format!(r#"<a href="{wrapped}">n</a>"#);
    let (_, report, destinations) = rewrite_and_decode(&p, &html_message(&html), &[]);
    assert_eq!(destinations, [wrapped]);
    assert_eq!(report["foreign_wrappers"], 1);
    assert_eq!(
        report["links"][0]["foreign"]["inner"],
        "https://example.com/#newsletter"
    );
    assert_eq!(report["links"][0]["foreign"]["vendor"], "proofpoint-v3");

    let config = p.write_config("[rewrite]\nunwrap_foreign = true\n");
    let (_, _, destinations) = rewrite_and_decode(&p, &html_message(&html), &["--config", config.to_str().unwrap()]);
    assert_eq!(destinations, ["https://example.com/#newsletter"]);
}
