//! The README's first command ends in the demo program: it must keep
//! working, inbound and outbound.

use std::process::Command;

#[test]
fn demo_sends_one_mail_through_each_relay() -> anyhow::Result<()> {
    let demo = postern_tests::process::binary("examples/demo");
    let output = Command::new(demo).env_remove("JOURNAL_STREAM").output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    assert!(text.contains("relay-in answered the sender: 250"), "{text}");
    assert!(text.contains("client=unknown[127.0.0.5]"), "{text}");
    assert!(
        text.contains("relay-out answered: 250 2.0.0 Queued as"),
        "{text}"
    );
    assert!(
        text.contains("Delivered to the MX at 127.0.0.7:2500"),
        "{text}"
    );
    Ok(())
}
